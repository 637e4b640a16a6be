"""daah_tf/models/image_hash_head.py: how a feature map enters fc6 (flatten or average)."""

# The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads.

from __future__ import annotations

import numpy as np
import pytest

from daah_tf.models.image_hash_head import ImageHashHead


def _numpy_head(head, pooled):
    hidden = np.maximum(pooled @ head.fc6.kernel.numpy() + head.fc6.bias.numpy(), 0)
    hidden = np.maximum(hidden @ head.fc7.kernel.numpy() + head.fc7.bias.numpy(), 0)
    return np.tanh(hidden @ head.code.kernel.numpy() + head.code.bias.numpy())


@pytest.mark.parametrize("pooling", ["flatten", "average"])
def test_head_against_numpy(pooling):
    maps = np.random.default_rng(0).normal(size=(3, 2, 2, 5)).astype(np.float32)
    head = ImageHashHead(bits=4, hidden_units=(6, 6), pooling=pooling)
    head.build(maps.shape)
    pooled = maps.mean(axis=(1, 2)) if pooling == "average" else maps.reshape(3, -1)
    assert head.fc6.kernel.shape[0] == pooled.shape[1]
    np.testing.assert_allclose(head(maps).numpy(), _numpy_head(head, pooled), atol=1e-5)


def test_average_pooling_leaves_vectors_alone_and_round_trips():
    head = ImageHashHead(bits=4, hidden_units=(6, 6), pooling="average")
    head.build((None, 7))
    vectors = np.random.default_rng(1).normal(size=(2, 7)).astype(np.float32)
    np.testing.assert_allclose(head(vectors).numpy(), _numpy_head(head, vectors), atol=1e-5)
    again = ImageHashHead.from_config(head.get_config())
    assert again.pooling == "average"


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling"):
        ImageHashHead(bits=4, pooling="max")


def test_image_hash_head_dropout_only_in_training():
    head = ImageHashHead(4, hidden_units=(16, 16), dropout=0.5)
    features = np.random.default_rng(9).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(head(features), head(features))
    assert not np.array_equal(head(features, training=True), head(features))
