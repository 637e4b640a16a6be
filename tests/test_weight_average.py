"""training/weight_average.py: the moving average of the weights that runs select and export."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from daah_tf.run import Run
from daah_tf.training import run_directory, trainer
from daah_tf.training.checkpoints import RunCheckpoints
from daah_tf.training.compiled_model import build_compiled_model
from daah_tf.training.weight_average import WeightAverage


def _brute_force_averages(initial, steps, decay):
    """The recurrence of the module docstring, in NumPy: one average per step of `steps`."""
    average = np.array(initial, dtype=np.float64)
    for t, live in enumerate(steps):
        d = min(decay, (1.0 + t) / (10.0 + t))
        average = d * average + (1.0 - d) * live
    return average


def test_update_follows_the_warmed_up_recurrence():
    rng = np.random.default_rng(0)
    live = [tf.Variable(rng.normal(size=(3, 2)).astype("float32")),
            tf.Variable(rng.normal(size=(4,)).astype("float32"))]
    initial = [v.numpy() for v in live]
    average = WeightAverage(live, decay=0.9)
    history = [[], []]
    for _ in range(25):  # inside the warm-up (d_t < 0.9 until t = 81); the cap: next test
        for index, variable in enumerate(live):
            variable.assign(variable + rng.normal(size=variable.shape).astype("float32"))
            history[index].append(variable.numpy())
        average.update()
    for index in range(2):
        expected = _brute_force_averages(initial[index], history[index], 0.9)
        np.testing.assert_allclose(average.averages[index].numpy(), expected, rtol=1e-5,
                                   atol=1e-5)
    assert int(average.updates.numpy()) == 25


def test_the_decay_caps_the_warm_up():
    """After many steps d_t is the decay itself: a constant weight w pulls the average
    geometrically, (average - w) shrinking by `decay` per step."""
    live = tf.Variable([0.0])
    average = WeightAverage([live], decay=0.5)
    average.updates.assign(1000)  # far past the warm-up, where (1 + t) / (10 + t) > 0.5
    live.assign([1.0])
    average.update()
    np.testing.assert_allclose(average.averages[0].numpy(), [0.5])
    average.update()
    np.testing.assert_allclose(average.averages[0].numpy(), [0.75])


def test_swapped_holds_the_averages_and_gives_the_live_weights_back_even_on_error():
    live = tf.Variable([1.0, 2.0])
    average = WeightAverage([live], decay=0.99)
    average.averages[0].assign([5.0, 6.0])
    with average.swapped():
        np.testing.assert_array_equal(live.numpy(), [5.0, 6.0])
        np.testing.assert_array_equal(average.averages[0].numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(live.numpy(), [1.0, 2.0])
    with pytest.raises(RuntimeError, match="inside"):
        with average.swapped():
            raise RuntimeError("inside")
    np.testing.assert_array_equal(live.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(average.averages[0].numpy(), [5.0, 6.0])


def test_keras_variables_are_averaged_through_their_tf_variables():
    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    average = WeightAverage(layer.trainable_variables, decay=0.9)
    before = [v.numpy().copy() for v in layer.trainable_variables]
    for variable in layer.trainable_variables:
        variable.assign(variable + 1.0)
    average.update()  # t = 0: d = 0.1, the average moves 90% of the way
    for avg, old in zip(average.averages, before, strict=True):
        np.testing.assert_allclose(avg.numpy(), old + 0.9, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_a_decay_outside_0_1_is_refused_naming_the_setting(decay):
    with pytest.raises(ValueError, match="weight_average_decay"):
        TrainConfig(weight_average_decay=decay)


def _config(model_dir, decay, epochs):
    # One evaluation, after the last epoch (eval_every = epochs): each run's evaluation sees
    # the weights of its latest checkpoint, so the selected weights can be compared with the
    # averages checkpointed at the epoch that was selected, whichever validated better.
    return RunConfig(
        data=DataConfig(synthetic_pairs=240, synthetic_classes=4, image_size=16, batch_size=32),
        model=ModelConfig(bits=16, cnn_filters=(4, 8), image_hidden_units=(16, 16),
                          text_units=(16, 16)),
        train=TrainConfig(model_dir=str(model_dir), epochs=epochs, eval_every=epochs,
                          max_steps_per_epoch=3, weight_average_decay=decay, verbose=0))


def _latest_live_and_averages(config, model_dir):
    """(live weights, averages, updates) of the latest checkpoint of a run, by restoring it."""
    inputs = Run(model_dir).inputs
    model = build_compiled_model(config, tuple(inputs["image_shape"]), inputs["text_dim"])
    average = WeightAverage(model.trainable_variables, config.train.weight_average_decay)
    checkpoints = RunCheckpoints(model, model_dir, keep=3, weight_average=average)
    assert checkpoints.restore_latest() is not None
    return ([v.numpy() for v in model.trainable_variables],
            [a.numpy() for a in average.averages], int(average.updates.numpy()))


def test_a_run_selects_and_exports_the_averaged_weights_and_resumes_the_average(tmp_path):
    model_dir = tmp_path / "run"
    config = _config(model_dir, 0.9, epochs=1)
    trainer.train_and_evaluate(config, "", print_fn=lambda line: None)
    _, first_averages, updates = _latest_live_and_averages(config, str(model_dir))
    assert updates == 3  # one per batch

    config = _config(model_dir, 0.9, epochs=2)  # resumed: the average goes on from 3 updates
    metrics = trainer.train_and_evaluate(config, "", print_fn=lambda line: None)
    assert metrics["best_epoch"] in (1, 2) and metrics["weight_average_decay"] == 0.9
    live, averages, updates = _latest_live_and_averages(config, str(model_dir))
    assert updates == 6
    assert any(not np.allclose(a, b) for a, b in zip(first_averages, averages, strict=True))
    # The selected weights are the averages of the epoch that validated better.
    expected = averages if metrics["best_epoch"] == 2 else first_averages
    selected = Run(str(model_dir)).restore("best").trainable_variables
    for weight, average in zip(selected, expected, strict=True):
        np.testing.assert_allclose(weight.numpy(), average, rtol=0, atol=0)
    assert any(not np.allclose(w, a) for w, a in zip(live, averages, strict=True))
    with open(Run(str(model_dir)).metrics_path, encoding="utf-8") as stream:
        written = json.load(stream)
    assert written["weight_average_decay"] == 0.9
    assert os.path.isdir(os.path.join(str(model_dir), "saved_model"))


def test_resuming_with_another_decay_is_refused_naming_it(tmp_path):
    model_dir = tmp_path / "run"
    trainer.train_and_evaluate(_config(model_dir, 0.0, epochs=1), "", print_fn=lambda line: None)
    with pytest.raises(run_directory.RunDirectoryError,
                       match=r"train.weight_average_decay: 0.0 -> 0.9"):
        trainer.train_and_evaluate(_config(model_dir, 0.9, epochs=2), "",
                                   print_fn=lambda line: None)
