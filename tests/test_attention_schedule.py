"""training/attention_schedule.py: the attention player's learning rate over the epochs."""

import math
import os

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


def _logged_rates(directory, tag):
    """{step: value} of a scalar the run wrote to TensorBoard (tf.summary writes tensors)."""
    import tensorflow as tf

    rates = {}
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            for value in event.summary.value:
                if value.tag == tag:
                    rates[event.step] = float(tf.make_ndarray(value.tensor))
    return rates


def test_a_cosine_run_trains_each_epoch_at_its_rate(tmp_path):
    """Through the trainer: the rates TensorBoard got per epoch are the schedule's, the hashing
    player's stays constant."""
    from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from daah_tf.training import trainer

    config = RunConfig(
        data=DataConfig(synthetic_pairs=240, synthetic_classes=4, image_size=16, batch_size=32),
        model=ModelConfig(bits=16, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                          text_units=(16, 16)),
        train=TrainConfig(model_dir=str(tmp_path / "run"), epochs=3, max_steps_per_epoch=2,
                          attention_learning_rate=2e-3, attention_schedule="cosine", verbose=0))
    trainer.train_and_evaluate(config, "", print_fn=lambda line: None)
    logs = os.path.join(str(tmp_path / "run"), "tensorboard", "train")
    attention = _logged_rates(logs, "learning_rate/attention")
    expected = {epoch + 1: cosine_learning_rate(2e-3, epoch, 3) for epoch in range(3)}
    assert attention.keys() == expected.keys()
    for step, rate in expected.items():  # 2e-3, 1.5e-3, 0.5e-3
        assert math.isclose(attention[step], rate, rel_tol=1e-5), (step, attention)
    assert all(math.isclose(r, 1e-3, rel_tol=1e-5)
               for r in _logged_rates(logs, "learning_rate/hash").values())
