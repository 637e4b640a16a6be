"""The dataset of a run's settings, as the run trains on it and every reader reads it back.

The trainer and `daah_tf.run.Run` (evaluate, search, serve, the tools) both load through
`load_data`, so a finished run is evaluated on exactly the rows, features and split it trained on.
The automatic feature cache's frozen backbone is built here and handed to daah_tf.data.auto_cache
(data code builds no model).
"""

import warnings

import numpy as np

from daah_tf.config import RunConfig
from daah_tf.data import auto_cache
from daah_tf.data.feature_cache import load_feature_cache
from daah_tf.data.registry import load_dataset
from daah_tf.data.splits import carve_validation
from daah_tf.models.backbones import frozen_backbone, weights_identity


def load_data(config: RunConfig):
    """The dataset, with the training split cut into train and validation."""
    data_config = config.data
    if data_config.feature_cache:
        # Backbone features cached by tools/cache_features.py stand in for the images.
        data = load_feature_cache(data_config.feature_cache, dataset=data_config.dataset)
    else:
        data = load_dataset(
            data_config.dataset, data_config.data_dir, seed=data_config.seed,
            skip_bad_rows=data_config.skip_bad_rows, num_pairs=data_config.synthetic_pairs,
            num_classes=data_config.synthetic_classes, image_size=data_config.image_size,
        )
        if auto_cache.is_cached_run(data, config.model):
            # A frozen backbone: its feature maps, computed on the first run, stand in for
            # the pictures (see daah_tf/data/auto_cache.py).
            data = auto_cache.load_cached(
                data, config.model, data_config.image_size, _frozen_backbone(config),
                cache_dir=config.train.cache_dir, data_dir=data_config.data_dir,
                batch_size=data_config.batch_size, progress=config.train.verbose > 0)
    train, validation = carve_validation(
        data.splits["train"], data_config.validation_fraction, data_config.seed,
        groups=data.extras.get("image_groups"))
    data.splits = dict(data.splits, train=train, validation=validation)
    return data


# Fewer validation queries than this make the validation mAP too noisy to select on. On
# coco-mini (40 validation pairs of 8 photos) one method's validation mAP at the same epoch
# differs by 0.4 between seeds and its selected epoch moves between 2 and 65.
SMALL_VALIDATION = 100


def warn_if_small_validation(data, fraction):
    """A UserWarning when model selection would rest on a handful of validation queries (the
    trainer calls it; evaluating or serving a run does not need it)."""
    validation = data.splits["validation"]
    if not 0 < len(validation) < SMALL_VALIDATION:
        return
    photos = ""
    groups = data.extras.get("image_groups")
    if groups is not None:
        count = len(np.unique(np.asarray(groups)[validation]))
        if count < len(validation):
            photos = f" of {count} photos"
    warnings.warn(
        f"the validation split has {len(validation)} pairs{photos}: model selection and early "
        f"stopping on so few queries are noisy; a larger --validation_fraction (now {fraction}) "
        f"steadies them at the cost of training pairs", UserWarning, stacklevel=2)


def _frozen_backbone(config: RunConfig):
    """The run's frozen backbone as daah_tf.data.auto_cache takes it."""
    model, size = config.model, config.data.image_size
    return auto_cache.FrozenBackbone(
        identity=weights_identity(model.image_backbone, model.image_weights),
        build=lambda: frozen_backbone(model, size))
