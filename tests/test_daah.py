"""The DAAH model: the two-player train step, ablations, fit, mixed precision, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import policy

from daah_tf import losses
from daah_tf.config import ModelConfig
from daah_tf.models import DAAH, ImageEncoder, TextEncoder, VectorAttention, build_model

IMAGE_SHAPE = (8, 8, 3)
TEXT_DIM = 10
NUM_LABELS = 3

ALL_METRICS = {
    "loss",
    "retrieval_loss",
    "adversarial_loss",
    "ret_t2i",
    "ret_i2t",
    "ret_i2i",
    "ret_t2t",
    "adv_t2i",
    "adv_i2t",
    "attention_objective",
    "attended_fraction_image",
    "attended_fraction_text",
    "bit_balance_image",
    "bit_balance_text",
    "nonfinite_batches",
    "gradient_norm_hash",
    "gradient_norm_attention",
    "center_loss",  # the hash-centre term of the defaults (--center_weight=1)
}
NO_ADVERSARIAL_METRICS = ALL_METRICS - {"attention_objective", "gradient_norm_attention"}
NO_ATTENTION_METRICS = ALL_METRICS - {
    "adversarial_loss",
    "adv_t2i",
    "adv_i2t",
    "attention_objective",
    "gradient_norm_attention",
    "attended_fraction_image",
    "attended_fraction_text",
}


def tiny_config(**overrides):
    values = dict(
        bits=4,
        cnn_filters=(4,),
        image_hidden_units=(8, 8),
        text_units=(8, 6),
        margin=1.0,
    )
    values.update(overrides)
    return ModelConfig(**values)


def make_batch(seed=0, batch=6, image_shape=IMAGE_SHAPE, labels=None):
    rng = np.random.default_rng(seed)
    inputs = {
        "image": rng.uniform(0, 255, size=(batch, *image_shape)).astype(np.float32),
        "text": (rng.uniform(size=(batch, TEXT_DIM)) < 0.5).astype(np.float32),
    }
    if labels is None:
        # Classes 0, 1, 2, 0, 1, 2, ...: valid triplets in every term.
        labels = np.eye(NUM_LABELS, dtype=np.float32)[np.arange(batch) % NUM_LABELS]
    return inputs, np.asarray(labels, np.float32)


def compiled_model(config=None, image_shape=IMAGE_SHAPE, hash_lr=1e-2, attention_lr=1e-2,
                   **compile_kwargs):
    model = build_model(config or tiny_config(), image_shape, TEXT_DIM)
    model.compile(
        hash_optimizer=keras.optimizers.Adam(hash_lr),
        attention_optimizer=keras.optimizers.Adam(attention_lr),
        **compile_kwargs,
    )
    return model


def snapshot(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


def named(variables, flags):
    return {v.path for v, flag in zip(variables, flags, strict=True) if flag}


def as_floats(results):
    return {name: float(value) for name, value in results.items()}


def assert_metrics_sane(results, expected_names=ALL_METRICS):
    assert set(results) == expected_names
    for name, value in results.items():
        assert np.isfinite(value), name
        if name.startswith(("attended_fraction", "bit_balance")):
            assert 0.0 <= value <= 1.0, name
        else:
            assert value >= 0.0 or name == "attention_objective", name


@pytest.fixture(autouse=True)
def _seeded():
    # No clear_session() afterwards: it costs ~0.25 s a test, and nothing here depends on
    # layer names being fresh.
    keras.utils.set_random_seed(0)


# ---------------------------------------------------------------------------------------------
# The two passes of one train step


def _spy_on_passes(monkeypatch, model):
    """Records the variables after each optimizer application and each attention pass."""
    hash_variables, attention_variables = model.hash_variables, model.attention_variables
    record = {
        "states": [(snapshot(hash_variables), snapshot(attention_variables))],
        "optimizers": [],
        "attention_passes": 0,
    }
    original_apply = DAAH._apply

    def apply(self, optimizer, tape, scaled_loss, variables, loss):
        applied = original_apply(self, optimizer, tape, scaled_loss, variables, loss)
        record["optimizers"].append(optimizer)
        record["states"].append((snapshot(hash_variables), snapshot(attention_variables)))
        return applied

    original_pass = DAAH._attention_pass

    def attention_pass(self, *args):
        record["attention_passes"] += 1
        # Between the passes: pass 1 has been applied, pass 2 not yet.
        assert len(record["states"]) == 2
        return original_pass(self, *args)

    monkeypatch.setattr(DAAH, "_apply", apply)
    monkeypatch.setattr(DAAH, "_attention_pass", attention_pass)
    return record


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_each_pass_changes_only_its_players_variables(monkeypatch, update):
    model = compiled_model(tiny_config(update=update))
    hash_variables, attention_variables = model.hash_variables, model.attention_variables
    assert attention_variables and hash_variables
    assert not {v.path for v in hash_variables} & {v.path for v in attention_variables}
    record = _spy_on_passes(monkeypatch, model)
    model.train_step(make_batch())

    assert record["optimizers"] == [model.hash_optimizer, model.attention_optimizer]
    assert record["optimizers"][0] is model.hash_optimizer
    assert record["attention_passes"] == (1 if update == "alternating" else 0)
    (hash_0, attention_0), (hash_1, attention_1), (hash_2, attention_2) = record["states"]
    # Pass 1 (hashing player): no attention variable moves; the encoders and heads do.
    assert not any(changed(attention_0, attention_1))
    moved = named(hash_variables, changed(hash_0, hash_1))
    for layer in ("image_encoder", "text_encoder", "image_head", "text_head"):
        assert any(f"{layer}/" in path for path in moved), (layer, moved)
    assert all("kernel" not in v.path or v.path in moved for v in hash_variables), moved
    # Pass 2 (attention player): nothing but the attention variables moves.
    assert not any(changed(hash_1, hash_2))
    moved = named(attention_variables, changed(attention_1, attention_2))
    kernels = {v.path for v in attention_variables if "kernel" in v.path}
    assert len(kernels) == 2 and kernels <= moved
    assert int(model.hash_optimizer.iterations) == 1
    assert int(model.attention_optimizer.iterations) == 1


def test_attention_pass_reuses_features_and_sees_the_updated_heads():
    model = compiled_model()
    inputs, labels = make_batch()
    hash_variables, attention_variables = model.hash_variables, model.attention_variables
    hash_0, attention_0 = snapshot(hash_variables), snapshot(attention_variables)
    results = as_floats(model.train_step((inputs, labels)))
    hash_1 = snapshot(hash_variables)
    # Pass 2's objective: features from the encoders before the update (pass 1's, reused),
    # attention before its update, hash heads after pass 1's update.
    for variable, value in zip(hash_variables, hash_0, strict=True):
        variable.assign(value)
    for variable, value in zip(attention_variables, attention_0, strict=True):
        variable.assign(value)
    image_features = model.image_encoder(inputs["image"])
    text_features = model.text_encoder(inputs["text"])
    before = model.compute_losses(model._attend_and_hash(image_features, text_features, False),
                                  labels)
    for variable, value in zip(hash_variables, hash_1, strict=True):
        variable.assign(value)
    outputs = model._attend_and_hash(image_features, text_features, False)
    objective = float(model._attention_objective(outputs, labels))
    np.testing.assert_allclose(results["attention_objective"], objective, rtol=1e-5)
    # And the reported hashing-player terms are those of the forward pass before the update.
    np.testing.assert_allclose(results["loss"], float(before["loss"]), rtol=1e-5)
    np.testing.assert_allclose(results["adversarial_loss"], float(before["adversarial_loss"]),
                               rtol=1e-5)
    assert abs(objective - results["adversarial_loss"]) > 1e-6  # the heads did move


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_train_step_runs_each_encoder_once(monkeypatch, update):
    model = compiled_model(tiny_config(update=update))
    calls = {"image": 0, "text": 0}
    original_image, original_text = ImageEncoder.call, TextEncoder.call

    def image_call(self, *args, **kwargs):
        calls["image"] += 1
        return original_image(self, *args, **kwargs)

    def text_call(self, *args, **kwargs):
        calls["text"] += 1
        return original_text(self, *args, **kwargs)

    monkeypatch.setattr(ImageEncoder, "call", image_call)
    monkeypatch.setattr(TextEncoder, "call", text_call)
    model.train_step(make_batch())
    assert calls == {"image": 1, "text": 1}


def test_one_step_with_zero_learning_rates_moves_only_the_other_player():
    inputs_labels = make_batch()
    # Attention learning rate 0 (SGD): only the hashing player moves.
    model = build_model(tiny_config(), IMAGE_SHAPE, TEXT_DIM)
    model.compile(hash_optimizer=keras.optimizers.SGD(0.1),
                  attention_optimizer=keras.optimizers.SGD(0.0))
    hash_0, attention_0 = snapshot(model.hash_variables), snapshot(model.attention_variables)
    model.train_step(inputs_labels)
    assert any(changed(hash_0, snapshot(model.hash_variables)))
    assert not any(changed(attention_0, snapshot(model.attention_variables)))
    # Hash learning rate 0: only the attention player moves.
    model = build_model(tiny_config(), IMAGE_SHAPE, TEXT_DIM)
    model.compile(hash_optimizer=keras.optimizers.SGD(0.0),
                  attention_optimizer=keras.optimizers.SGD(0.1))
    hash_0, attention_0 = snapshot(model.hash_variables), snapshot(model.attention_variables)
    model.train_step(inputs_labels)
    assert not any(changed(hash_0, snapshot(model.hash_variables)))
    assert any(changed(attention_0, snapshot(model.attention_variables)))


@pytest.mark.parametrize("attention_objective", ["adversarial", "adversarial_retrieval"])
@pytest.mark.parametrize("attention_gradient", ["unattended", "both", "unattended_and_text"])
def test_attention_step_is_gradient_ascent_on_its_objective(attention_gradient,
                                                            attention_objective):
    # With the hashing player frozen (SGD, lr 0), the attention player's SGD step (lr 1) must
    # be +d objective / d theta_G, recomputed here from the losses module: L_adv (Eq. 3), minus
    # L_ret (Eq. 2) of the attended codes for "adversarial_retrieval". With "unattended", the
    # attended query codes count as constants in L_adv (not in L_ret); with
    # "unattended_and_text" only the attended image codes do.
    model = build_model(tiny_config(attention_gradient=attention_gradient,
                                    attention_objective=attention_objective,
                                    mask_estimator="logit"), IMAGE_SHAPE, TEXT_DIM)
    model.compile(hash_optimizer=keras.optimizers.SGD(0.0),
                  attention_optimizer=keras.optimizers.SGD(1.0))
    inputs, labels = make_batch()
    attention_0 = snapshot(model.attention_variables)
    with tf.GradientTape() as tape:
        outputs = model(inputs)
        image_codes, text_codes = outputs["image_codes"], outputs["text_codes"]
        if attention_gradient != "both":
            image_codes = tf.stop_gradient(image_codes)
        if attention_gradient == "unattended":
            text_codes = tf.stop_gradient(text_codes)
        objective = losses.adversarial_loss(
            image_codes, text_codes, outputs["image_unattended_codes"],
            outputs["text_unattended_codes"], labels, 1.0)["total"]
        if attention_objective == "adversarial_retrieval":
            objective -= losses.retrieval_loss(outputs["image_codes"], outputs["text_codes"],
                                               labels, 1.0)["total"]
    gradients = tape.gradient(objective, model.attention_variables)
    results = as_floats(model.train_step((inputs, labels)))
    np.testing.assert_allclose(results["attention_objective"], float(objective), rtol=1e-6)
    steps = [v.numpy() - before for v, before in zip(model.attention_variables, attention_0,
                                                      strict=True)]
    expected = [g.numpy() for g in gradients]
    assert any(np.abs(e).max() > 1e-4 for e in expected)
    for step, want in zip(steps, expected, strict=True):
        np.testing.assert_allclose(step, want, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Ablations, metrics, test_step


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (dict(), ALL_METRICS),
        (dict(update="simultaneous"), ALL_METRICS),
        (dict(adversarial=False), NO_ADVERSARIAL_METRICS),
        (dict(attention="none"), NO_ATTENTION_METRICS),
    ],
    ids=["alternating", "simultaneous", "no-adversarial", "no-attention"],
)
def test_metrics_report_every_term_and_test_step_matches(overrides, expected):
    model = compiled_model(tiny_config(**overrides))
    batch = make_batch()
    train = as_floats(model.train_step(batch))
    assert_metrics_sane(train, expected)
    np.testing.assert_allclose(
        train["retrieval_loss"],
        sum(train[f"ret_{t}"] for t in ("t2i", "i2t", "i2i", "t2t")),
        rtol=1e-5,
    )
    if "adversarial_loss" in expected:
        np.testing.assert_allclose(train["adversarial_loss"],
                                   train["adv_t2i"] + train["adv_i2t"], rtol=1e-5)
    adversarial = overrides.get("adversarial", True) and "adversarial_loss" in expected
    hash_loss = train["retrieval_loss"] + model.center_weight * train["center_loss"] + (
        model.adversarial_weight * train["adversarial_loss"] if adversarial else 0.0)
    np.testing.assert_allclose(train["loss"], hash_loss, rtol=1e-5)
    for tracker in model.metrics:
        tracker.reset_state()
    evaluation = as_floats(model.test_step(batch))
    assert set(evaluation) == set(train)
    assert_metrics_sane(evaluation, expected)
    assert {m.name for m in model.metrics} == expected


def test_metrics_equal_the_losses_of_the_forward_pass():
    model = compiled_model()
    inputs, labels = make_batch()
    outputs = model(inputs, training=True)
    expected = {
        **{f"ret_{k}": v for k, v in losses.retrieval_loss(
            outputs["image_codes"], outputs["text_codes"], labels, 1.0).items()},
        **{f"adv_{k}": v for k, v in losses.adversarial_loss(
            outputs["image_codes"], outputs["text_codes"], outputs["image_unattended_codes"],
            outputs["text_unattended_codes"], labels, 1.0).items()},
    }
    results = as_floats(model.train_step((inputs, labels)))
    for name in ("ret_t2i", "ret_i2t", "ret_i2i", "ret_t2t", "adv_t2i", "adv_i2t"):
        np.testing.assert_allclose(results[name], float(expected[name]), rtol=1e-5)
    np.testing.assert_allclose(
        results["attended_fraction_image"], float(tf.reduce_mean(outputs["image_mask"])))
    np.testing.assert_allclose(
        results["attended_fraction_text"], float(tf.reduce_mean(outputs["text_mask"])))


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_no_adversarial_ablation_never_touches_the_attention(update):
    model = compiled_model(tiny_config(adversarial=False, update=update))
    assert model.adversarial is False and model.image_attention is not None
    attention_0 = snapshot(model.attention_variables)
    hash_0 = snapshot(model.hash_variables)
    inputs, labels = make_batch()
    results = as_floats(model.train_step((inputs, labels)))
    results = as_floats(model.train_step((inputs, labels)))
    assert not any(changed(attention_0, snapshot(model.attention_variables)))
    assert any(changed(hash_0, snapshot(model.hash_variables)))
    assert int(model.attention_optimizer.iterations) == 0
    np.testing.assert_allclose(  # no L_adv in the hashing player's loss
        results["loss"], results["retrieval_loss"] + model.center_weight * results["center_loss"],
        rtol=1e-6)


def test_no_attention_ablation_trains_on_whole_features():
    model = compiled_model(tiny_config(attention="none"))
    assert model.attention_variables == []
    inputs, labels = make_batch()
    outputs = model(inputs)
    assert set(outputs) == {"image_codes", "text_codes"}
    features = model.image_encoder(inputs["image"])
    np.testing.assert_allclose(model.encode_image(inputs["image"]),
                               model.image_head(features), rtol=1e-6)
    hash_0 = snapshot(model.hash_variables)
    results = as_floats(model.train_step((inputs, labels)))
    assert_metrics_sane(results, NO_ATTENTION_METRICS)
    assert any(changed(hash_0, snapshot(model.hash_variables)))
    with pytest.raises(ValueError, match="no attention"):
        model.image_mask(inputs["image"])


def test_vector_image_features_get_vector_attention_and_train():
    model = compiled_model(tiny_config(image_backbone="precomputed"), image_shape=(128,))
    assert isinstance(model.image_attention, VectorAttention)
    inputs, labels = make_batch(image_shape=(128,))
    attention_0 = snapshot(model.attention_variables)
    results = as_floats(model.train_step((inputs, labels)))
    assert_metrics_sane(results)
    assert any(changed(attention_0, snapshot(model.attention_variables)))
    mask = model.image_mask(inputs["image"]).numpy()
    assert mask.shape == (6, 128) and set(np.unique(mask)) <= {0.0, 1.0}


def test_model_rejects_bad_settings():
    with pytest.raises(ValueError, match="update"):
        build_model(tiny_config(update="sometimes"), IMAGE_SHAPE, TEXT_DIM)
    with pytest.raises(ValueError, match="similarity"):
        build_model(tiny_config(similarity="jaccard"), IMAGE_SHAPE, TEXT_DIM)


# ---------------------------------------------------------------------------------------------
# Degenerate batches


@pytest.mark.parametrize(
    "case",
    ["identical-inputs", "all-equal-labels", "no-labels", "graded-identical"],
)
def test_degenerate_batches_stay_finite(case):
    similarity = "cosine" if case == "graded-identical" else "binary"
    model = compiled_model(tiny_config(similarity=similarity))
    inputs, labels = make_batch()
    if case in ("identical-inputs", "graded-identical"):
        inputs = {k: np.repeat(v[:1], len(v), axis=0) for k, v in inputs.items()}
    elif case == "all-equal-labels":
        labels = np.ones_like(labels)
    else:
        labels = np.zeros_like(labels)
    for _ in range(2):
        results = as_floats(model.train_step((inputs, labels)))
    assert_metrics_sane(results)
    for variable in model.hash_variables + model.attention_variables:
        assert np.all(np.isfinite(variable.numpy())), variable.path
    if case in ("all-equal-labels", "no-labels"):
        # No valid triplet: every triplet term is exactly 0. C, pointwise, and the hashing
        # player's gradient are 0 only where no item has labels.
        pointwise = {"loss", "center_loss", "gradient_norm_hash"}
        for name in ALL_METRICS - pointwise:
            if not name.startswith(("attended", "bit_balance")):
                assert results[name] == 0.0, name
        np.testing.assert_allclose(results["loss"], results["center_loss"], rtol=1e-6)
        for name in pointwise:
            assert (results[name] == 0.0) == (case == "no-labels"), name
    else:
        assert results["loss"] > 0.0


# ---------------------------------------------------------------------------------------------
# fit, XLA, mixed precision


def _dataset(batch=4, steps=2, image_shape=IMAGE_SHAPE, seed=1):
    inputs, labels = make_batch(seed=seed, batch=batch * steps, image_shape=image_shape)
    return tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch)


def test_fit_and_evaluate():
    model = compiled_model(jit_compile=False)
    history = model.fit(_dataset(), validation_data=_dataset(seed=2), epochs=2, shuffle=False,
                        verbose=0)
    assert set(ALL_METRICS) <= set(history.history)
    assert {f"val_{name}" for name in ALL_METRICS} <= set(history.history)
    for name, values in history.history.items():
        assert len(values) == 2 and np.all(np.isfinite(values)), name
    assert int(model.hash_optimizer.iterations) == 4
    assert int(model.attention_optimizer.iterations) == 4
    assert model.optimizer is None  # no Keras-level optimizer over both players' variables


def test_fit_with_xla():
    model = compiled_model(tiny_config(cnn_filters=(2,)), jit_compile=True)
    assert model.jit_compile
    history = model.fit(_dataset(steps=1), epochs=1, shuffle=False, verbose=0)
    for name in ALL_METRICS:
        assert np.isfinite(history.history[name][0]), name
    assert int(model.attention_optimizer.iterations) == 1


def test_mixed_float16_wraps_both_optimizers_and_trains():
    with policy("mixed_float16"):
        model = compiled_model()
        assert model.image_encoder.compute_dtype == "float16"
        assert isinstance(model.hash_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.attention_optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(_dataset(steps=1), epochs=1, shuffle=False, verbose=0)
        codes = model.encode_image(make_batch()[0]["image"])
    assert keras.config.dtype_policy().name == "float32"
    assert codes.dtype == tf.float32
    for name in ALL_METRICS:
        assert np.isfinite(history.history[name][0]), name


def test_mixed_bfloat16_step_gives_float32_codes():
    with policy("mixed_bfloat16"):
        model = compiled_model()
        assert model.image_encoder.compute_dtype == "bfloat16"
        assert not isinstance(model.hash_optimizer, keras.optimizers.LossScaleOptimizer)
        inputs, labels = make_batch()
        attention_0 = snapshot(model.attention_variables)
        results = as_floats(model.train_step((inputs, labels)))
        outputs = model(inputs)
        image_codes = model.encode_image(inputs["image"])
        text_codes = model.encode_text(inputs["text"])
    assert keras.config.dtype_policy().name == "float32"
    assert_metrics_sane(results)
    assert any(changed(attention_0, snapshot(model.attention_variables)))
    for codes in (image_codes, text_codes, outputs["image_codes"], outputs["text_codes"],
                  outputs["image_unattended_codes"], outputs["text_unattended_codes"]):
        assert codes.dtype == tf.float32
    assert model.hash_variables[0].dtype == "float32"


# ---------------------------------------------------------------------------------------------
# Serialization


def test_get_config_from_config_round_trip():
    model = build_model(tiny_config(margin=0.5, similarity="count", update="simultaneous"),
                        IMAGE_SHAPE, TEXT_DIM)
    config = model.get_config()
    clone = DAAH.from_config(config)
    clone.build({"image": (None, *IMAGE_SHAPE), "text": (None, TEXT_DIM)})
    assert clone.get_config() == config
    assert (clone.margin, clone.similarity, clone.update) == (0.5, "count", "simultaneous")
    assert [v.shape for v in clone.weights] == [v.shape for v in model.weights]
    clone.set_weights(model.get_weights())
    images = make_batch()[0]["image"]
    np.testing.assert_array_equal(clone.encode_image(images), model.encode_image(images))
    no_attention = build_model(tiny_config(attention="none"), IMAGE_SHAPE, TEXT_DIM)
    revived = DAAH.from_config(no_attention.get_config())
    assert revived.image_attention is None and revived.adversarial is False


def test_keras_file_round_trip_restores_both_optimizers(tmp_path):
    model = compiled_model()
    inputs, labels = make_batch()
    model.train_step((inputs, labels))
    model.train_step(make_batch(seed=3))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, DAAH)
    for name in ("hash_optimizer", "attention_optimizer"):
        original, restored = getattr(model, name), getattr(loaded, name)
        assert type(restored) is type(original)
        assert int(restored.iterations) == 2
        assert len(restored.variables) == len(original.variables) > 2
        for a, b in zip(original.variables, restored.variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(loaded.encode_image(inputs["image"]),
                                  model.encode_image(inputs["image"]))
    np.testing.assert_array_equal(loaded.encode_text(inputs["text"]),
                                  model.encode_text(inputs["text"]))
    # Training continues, and the same step from the same state gives the same model.
    model.train_step((inputs, labels))
    results = as_floats(loaded.train_step((inputs, labels)))
    assert_metrics_sane(results)
    assert int(loaded.hash_optimizer.iterations) == 3
    assert int(loaded.attention_optimizer.iterations) == 3
    np.testing.assert_allclose(loaded.encode_text(inputs["text"]),
                               model.encode_text(inputs["text"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.encode_image(inputs["image"]),
                               model.encode_image(inputs["image"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("view, text_view", [
    ("attended", "same"), ("whole", "same"), ("residual", "same"), ("gated", "same"),
    ("gated", "whole"), ("attended", "gated"),
])
def test_retrieval_view_reads_the_features_it_names(view, text_view):
    """H = D(Z * f) (the paper's), D(f), D((1 + Z) * f) or D(Z * f + sigmoid(g) (1 - Z) * f),
    the text side's by --text_retrieval_view where given; the unattended codes are always
    D((1 - Z) * f), and encode_image/encode_text give the training forward's codes."""
    model = build_model(tiny_config(retrieval_view=view, text_retrieval_view=text_view),
                        IMAGE_SHAPE, TEXT_DIM)
    views = {"image": view, "text": view if text_view == "same" else text_view}
    gate_values = {"image": -1.0, "text": 2.0}  # any values but the initial 0
    assert sorted(getattr(model, "unattended_gates", {})) == sorted(
        m for m in views if views[m] == "gated")
    for modality, gate in getattr(model, "unattended_gates", {}).items():
        gate.assign(gate_values[modality])
    inputs, _ = make_batch()
    outputs = model(inputs)
    for modality, encoder, attention, head, encode in (
        ("image", model.image_encoder, model.image_attention, model.image_head,
         model.encode_image),
        ("text", model.text_encoder, model.text_attention, model.text_head, model.encode_text),
    ):
        features = encoder(inputs[modality]).numpy()
        mask = attention(features)[2].numpy()
        if mask.ndim < features.ndim:
            mask = mask[..., None]  # a spatial mask covers every channel
        gate = 1.0 / (1.0 + np.exp(-gate_values[modality]))
        read = {"attended": mask * features, "whole": features,
                "residual": (1.0 + mask) * features,
                "gated": mask * features + gate * (1.0 - mask) * features}[views[modality]]
        np.testing.assert_allclose(outputs[f"{modality}_codes"], head(read), atol=1e-5)
        np.testing.assert_allclose(outputs[f"{modality}_unattended_codes"],
                                   head((1.0 - mask) * features), atol=1e-5)
        np.testing.assert_allclose(encode(inputs[modality]), head(read), atol=1e-5)


def test_gates_belong_to_the_hashing_player_and_learn():
    model = compiled_model(tiny_config(retrieval_view="gated"))
    gates = list(model.unattended_gates.values())
    assert all(any(g is v for v in model.hash_variables) for g in gates)
    assert not any(g is v for g in gates for v in model.attention_variables)
    model.train_step(make_batch())
    assert all(float(g.numpy()) != 0.0 for g in gates)


def test_retrieval_view_survives_get_config():
    model = build_model(tiny_config(retrieval_view="residual"), IMAGE_SHAPE, TEXT_DIM)
    assert DAAH.from_config(model.get_config()).retrieval_view == "residual"
    assert "text_retrieval_view" not in model.get_config()  # older configs keep their form
    model = build_model(tiny_config(text_retrieval_view="whole"), IMAGE_SHAPE, TEXT_DIM)
    assert DAAH.from_config(model.get_config()).views == {"image": "gated", "text": "whole"}
    with pytest.raises(ValueError, match="retrieval_view"):
        build_model(tiny_config(retrieval_view="sideways"), IMAGE_SHAPE, TEXT_DIM)


WITH_AND_WITHOUT_ATTENTION = pytest.mark.parametrize(
    "overrides", [dict(), dict(attention="none")], ids=["daah", "no-attention"])


def _hashing_terms(**config):
    """A compiled tiny model of `config`, a batch, its training-mode outputs and the hashing
    player's terms as floats: (model, inputs, labels, outputs, terms)."""
    model = compiled_model(tiny_config(**config))
    inputs, labels = make_batch()
    outputs = model(inputs, training=True)
    terms = {k: float(v) for k, v in model.compute_losses(outputs, labels).items()}
    return model, inputs, labels, outputs, terms


@WITH_AND_WITHOUT_ATTENTION
def test_quantization_weight_adds_q_to_the_hashing_players_loss(overrides):
    model, inputs, labels, outputs, terms = _hashing_terms(quantization_weight=0.5,
                                                           center_weight=0.0, **overrides)
    q = losses.quantization_loss(outputs["image_codes"], outputs["text_codes"])
    np.testing.assert_allclose(terms["quantization_loss"], float(q), rtol=1e-6)
    adversarial = terms.get("adversarial_loss", 0.0) * model.adversarial_weight
    np.testing.assert_allclose(terms["loss"],
                               terms["retrieval_loss"] + 0.5 * float(q) + adversarial, rtol=1e-5)
    train = as_floats(model.train_step((inputs, labels)))
    assert "quantization_loss" in train and np.isfinite(train["quantization_loss"])
    # The paper's loss (weight 0) has no such term, and configs without it keep their form.
    plain = build_model(tiny_config(**overrides), IMAGE_SHAPE, TEXT_DIM)
    assert "quantization_loss" not in plain.compute_losses(plain(inputs), labels)
    assert "quantization_weight" not in plain.get_config()
    assert DAAH.from_config(model.get_config()).quantization_weight == 0.5



@WITH_AND_WITHOUT_ATTENTION
def test_center_weight_adds_c_to_the_hashing_players_loss(overrides):
    model, inputs, labels, outputs, terms = _hashing_terms(center_weight=0.5, **overrides)
    paper = dict(overrides, center_weight=0.0)
    centers = losses.hash_centers(labels.shape[-1], model.image_head.bits)
    c = losses.center_loss(outputs["image_codes"], outputs["text_codes"], labels, centers)
    assert float(c) > 0.0
    np.testing.assert_allclose(terms["center_loss"], float(c), rtol=1e-6)
    adversarial = terms.get("adversarial_loss", 0.0) * model.adversarial_weight
    np.testing.assert_allclose(terms["loss"],
                               terms["retrieval_loss"] + 0.5 * float(c) + adversarial, rtol=1e-5)
    train = as_floats(model.train_step((inputs, labels)))
    assert "center_loss" in train and np.isfinite(train["center_loss"])
    # The attention player's objective does not see C.
    if "attention_objective" in train:
        objective = float(model.objective.attention_objective(outputs, labels))
        plain_model = build_model(tiny_config(**paper), IMAGE_SHAPE, TEXT_DIM)
        assert np.isclose(objective, float(plain_model.objective.attention_objective(outputs,
                                                                                     labels)))
    plain = build_model(tiny_config(**paper), IMAGE_SHAPE, TEXT_DIM)
    assert "center_loss" not in plain.compute_losses(plain(inputs), labels)
    assert "center_weight" not in plain.get_config()
    assert DAAH.from_config(model.get_config()).center_weight == 0.5

def test_attention_area_weight_charges_the_attention_player_for_the_image_maps_share():
    model, inputs, labels, outputs, terms = _hashing_terms(attention_area_weight=0.5)
    paper = build_model(tiny_config(attention_area_weight=0.0), IMAGE_SHAPE, TEXT_DIM)
    share = float(np.mean(outputs["image_mask"].numpy()))
    assert outputs["image_mask"].shape.rank == 3 and 0.0 < share < 1.0
    np.testing.assert_allclose(
        float(model.objective.attention_objective(outputs, labels)),
        float(paper.objective.attention_objective(outputs, labels)) - 0.5 * share, rtol=1e-5)
    # The hashing player's loss does not see it.
    paper_terms = paper.objective.hash_terms(outputs, labels)
    np.testing.assert_allclose(terms["loss"], float(paper_terms["loss"]), rtol=1e-6)
    # Its gradient reaches the image attention's scores through the straight-through mask.
    with tf.GradientTape() as tape:
        area = losses.attention_area(model(inputs, training=True)["image_mask"])
    gradients = tape.gradient(area, model.image_attention.trainable_variables)
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)
    assert np.isfinite(as_floats(model.train_step((inputs, labels)))["attention_objective"])
    assert DAAH.from_config(model.get_config()).attention_area_weight == 0.5
    assert "attention_area_weight" not in paper.get_config()  # older configs keep their form


def test_attention_area_weight_leaves_vector_masks_alone():
    # Wiki-like inputs: the image is a feature vector, whose dimensions are not places.
    config = tiny_config(image_backbone="precomputed", attention_area_weight=0.5)
    model = build_model(config, (12,), TEXT_DIM)
    paper = build_model(tiny_config(image_backbone="precomputed"), (12,), TEXT_DIM)
    inputs, labels = make_batch(image_shape=(12,))
    outputs = model(inputs, training=True)
    assert outputs["image_mask"].shape.rank == 2
    np.testing.assert_allclose(float(model.objective.attention_objective(outputs, labels)),
                               float(paper.objective.attention_objective(outputs, labels)),
                               rtol=1e-6)


@WITH_AND_WITHOUT_ATTENTION
def test_binary_ranking_share_mixes_both_players_retrieval_loss(overrides):
    model, inputs, labels, outputs, terms = _hashing_terms(binary_ranking_share=0.25,
                                                           **overrides)
    expected = losses.binary_aware_retrieval_loss(
        outputs["image_codes"], outputs["text_codes"], labels, model.margin, model.similarity,
        0.25)
    np.testing.assert_allclose(terms["retrieval_loss"], float(expected["total"]), rtol=1e-6)
    assert terms["retrieval_loss"] != pytest.approx(float(losses.retrieval_loss(
        outputs["image_codes"], outputs["text_codes"], labels, model.margin)["total"]))
    if model.adversarial:
        # The attention player's -L_ret is the same mixed L_ret.
        objective = model._attention_objective(outputs, labels)
        adversarial = model._adversarial_loss(outputs, labels, attention_player=True)
        np.testing.assert_allclose(float(objective),
                                   float(adversarial["total"] - expected["total"]), rtol=1e-5)
    assert np.isfinite(as_floats(model.train_step((inputs, labels)))["loss"])
    plain = build_model(tiny_config(**overrides), IMAGE_SHAPE, TEXT_DIM)
    assert "binary_ranking_share" not in plain.get_config()  # older configs keep their form
    assert DAAH.from_config(model.get_config()).binary_ranking_share == 0.25
    with pytest.raises(ValueError, match="binary_ranking_share"):
        build_model(tiny_config(binary_ranking_share=1.5, **overrides), IMAGE_SHAPE, TEXT_DIM)


@pytest.mark.parametrize("side", ["t2i", "i2t"])
def test_hash_adversarial_terms_keeps_one_term_of_l_adv_for_the_hashing_player(side):
    model, inputs, labels, outputs, terms = _hashing_terms(hash_adversarial_terms=side,
                                                           adversarial_weight=0.5,
                                                           center_weight=0.0)
    adversarial = losses.adversarial_loss(
        outputs["image_codes"], outputs["text_codes"], outputs["image_unattended_codes"],
        outputs["text_unattended_codes"], labels, model.margin, model.similarity)
    np.testing.assert_allclose(terms[f"adv_{side}"], float(adversarial[side]), rtol=1e-6)
    np.testing.assert_allclose(terms["loss"],
                               terms["retrieval_loss"] + 0.5 * float(adversarial[side]),
                               rtol=1e-5)
    # The attention player still maximises all of L_adv (less L_ret).
    objective = model._attention_objective(outputs, labels)
    retrieval = losses.retrieval_loss(outputs["image_codes"], outputs["text_codes"], labels,
                                      model.margin, model.similarity)
    np.testing.assert_allclose(float(objective),
                               float(adversarial["total"] - retrieval["total"]), rtol=1e-5)
    assert np.isfinite(as_floats(model.train_step((inputs, labels)))["loss"])
    assert DAAH.from_config(model.get_config()).hash_adversarial_terms == side
    plain = build_model(tiny_config(), IMAGE_SHAPE, TEXT_DIM)
    assert "hash_adversarial_terms" not in plain.get_config()  # older configs keep their form
    with pytest.raises(ValueError, match="hash_adversarial_terms"):
        build_model(tiny_config(hash_adversarial_terms="sideways"), IMAGE_SHAPE, TEXT_DIM)
