"""training/attention_schedule.py: the attention player's learning rate over the epochs."""

import math

import keras
import numpy as np
import pytest

from daah_tf.training.attention_schedule import AttentionLearningRate, cosine_learning_rate


def test_cosine_matches_the_closed_form_and_ends_at_zero():
    epochs, base = 7, 3e-3
    expected = base * (1 + np.cos(np.pi * np.arange(epochs + 1) / epochs)) / 2
    got = [cosine_learning_rate(base, epoch, epochs) for epoch in range(epochs + 1)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert got[0] == base and abs(got[-1]) < 1e-15
    assert np.all(np.diff(got) < 0)  # strictly falling
    assert cosine_learning_rate(base, epochs + 5, epochs) == got[-1]  # past the budget: 0


class _TwoPlayers:
    """What the callback touches of a DAAH model: its two players' optimizers."""

    def __init__(self, wrap):
        self.hash_optimizer = keras.optimizers.Adam(1e-3)
        attention = keras.optimizers.Adam(2e-3)
        if wrap:  # what DAAH.compile makes under --mixed_precision=float16
            attention = keras.optimizers.LossScaleOptimizer(attention)
        self.attention_optimizer = attention


def _rate(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


@pytest.mark.parametrize("wrap", [False, True], ids=["float32", "loss_scaled"])
def test_cosine_sets_only_the_attention_players_rate_each_epoch(wrap):
    model = _TwoPlayers(wrap)
    callback = AttentionLearningRate("cosine", 2e-3, epochs=4)
    callback.set_model(model)
    for epoch in (0, 1, 3, 2):  # any order: a resumed run starts at its initial epoch
        callback.on_epoch_begin(epoch)
        assert math.isclose(_rate(model.attention_optimizer),
                            2e-3 * (1 + math.cos(math.pi * epoch / 4)) / 2, rel_tol=1e-6)
        assert math.isclose(_rate(model.hash_optimizer), 1e-3, rel_tol=1e-6)


def test_constant_keeps_the_rate():
    model = _TwoPlayers(False)
    callback = AttentionLearningRate("constant", 2e-3, epochs=4)
    callback.set_model(model)
    for epoch in range(4):
        callback.on_epoch_begin(epoch)
        assert math.isclose(_rate(model.attention_optimizer), 2e-3, rel_tol=1e-6)


def test_the_flag_reaches_the_config_and_refuses_other_values():
    from daah_tf.config import TrainConfig

    assert TrainConfig(attention_schedule="cosine").attention_schedule == "cosine"
    with pytest.raises(ValueError, match="attention_schedule"):
        TrainConfig(attention_schedule="linear")
