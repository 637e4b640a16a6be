"""The selected model's attention on the query set, as metrics.json reports it."""

from __future__ import annotations

import types

import numpy as np

from daah_tf.config import DataConfig, ModelConfig, RunConfig
from daah_tf.models import build_model
from daah_tf.training import trainer


class _Feeder:
    """The query split in batches of 4 (the last one short), as the trainer's feeder gives it."""

    def __init__(self, images, texts, boxes=None, batch=4):
        self.images, self.texts, self.batch = images, texts, batch
        extras = {} if boxes is None else {"object_boxes": boxes}
        self.data = types.SimpleNamespace(extras=extras,
                                          splits={"query": np.arange(len(images))})

    def pipeline(self, split, training, with_labels=True):
        assert split == "query" and not training and not with_labels
        for start in range(0, len(self.images), self.batch):
            yield {"image": self.images[start:start + self.batch],
                   "text": self.texts[start:start + self.batch]}


def test_attended_shares_are_the_mean_share_per_query_item():
    rng = np.random.default_rng(4)
    config = RunConfig(data=DataConfig(image_size=8),
                       model=ModelConfig(bits=4, cnn_filters=(4,), image_hidden_units=(4, 4),
                                         text_units=(6, 5)))
    model = build_model(config.model, (8, 8, 3), text_dim=9)
    images = rng.uniform(0, 255, size=(10, 8, 8, 3)).astype(np.float32)
    texts = rng.integers(0, 3, size=(10, 9)).astype(np.float32)

    results = trainer._selected_masks(model, _Feeder(images, texts), config)

    image_masks = model.image_mask(images).numpy()  # (10, 8, 8): one block, unpooled
    text_masks = model.text_mask(texts).numpy()  # (10, 5)
    assert image_masks.shape == (10, 8, 8) and text_masks.shape == (10, 5)
    np.testing.assert_allclose(results["attended_share_image"],
                               image_masks.reshape(10, -1).mean(axis=1).mean(), rtol=1e-6)
    np.testing.assert_allclose(results["attended_share_text"],
                               text_masks.mean(axis=1).mean(), rtol=1e-6)
    assert "mask_iou" not in results  # no object boxes, no IoU

    boxes = -np.ones((10, 2, 4), np.int32)
    boxes[:, 0] = (0, 0, 4, 4)
    with_boxes = trainer._selected_masks(model, _Feeder(images, texts, boxes), config)
    assert 0.0 <= with_boxes["mask_iou"] <= 1.0
    line = [x for x in trainer.summary_lines(dict(_BASE, **results)) if "attended share" in x]
    assert line == [f"  attended share (query set): image {results['attended_share_image']:.0%} "
                    f"text {results['attended_share_text']:.0%}"]


_BASE = dict(dataset="synthetic", bits=4, num_query=10, num_database=10, best_epoch=1,
             i2t_map=0.5, t2i_map=0.5, i2i_map=0.5, t2t_map=0.5, chance_map=0.25)
