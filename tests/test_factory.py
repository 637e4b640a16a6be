"""The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads."""

from __future__ import annotations

import numpy as np
import pytest

from daah_tf.config import ModelConfig
from daah_tf.models import (
    SpatialAttention,
    VectorAttention,
    build_model,
    factory,
)


def _tiny_config(**overrides):
    values = dict(bits=4, cnn_filters=(4,), image_hidden_units=(4, 4), text_units=(6, 5))
    values.update(overrides)
    return ModelConfig(**values)


@pytest.mark.parametrize(
    "backbone, image_shape, expected",
    [
        ("small_cnn", (8, 8, 3), SpatialAttention),
        ("precomputed", (2, 2, 6), SpatialAttention),
        ("precomputed", (128,), VectorAttention),
    ],
)
def test_factory_picks_attention_by_feature_rank(backbone, image_shape, expected):
    model = build_model(_tiny_config(image_backbone=backbone), image_shape, text_dim=9)
    assert type(model.image_attention) is expected
    assert type(model.text_attention) is VectorAttention
    images = np.random.default_rng(5).uniform(0, 1, size=(3, *image_shape)).astype(np.float32)
    mask = model.image_mask(images).numpy()
    features_shape = model.image_encoder.compute_output_shape((3, *image_shape))
    assert mask.shape == tuple(features_shape[:-1] if len(features_shape) == 4 else features_shape)
    assert model.encode_image(images).shape == (3, 4)
    assert type(factory.attention_for((None, 4, 4, 2))) is SpatialAttention
    assert type(factory.attention_for((None, 16))) is VectorAttention


def test_factory_without_attention_and_unknown_attention():
    model = build_model(_tiny_config(attention="none"), (8, 8, 3), text_dim=9)
    assert model.image_attention is None and model.text_attention is None
    assert model.attention_variables == []
    with pytest.raises(ValueError, match="attention"):
        build_model(_tiny_config(attention="soft"), (8, 8, 3), text_dim=9)


@pytest.mark.parametrize("bits, margin, scaling, expected", [
    (64, 1.0, "sqrt_bits", 2.0),  # sqrt(64 / 16) = 2
    (32, 1.0, "sqrt_bits", 2 ** 0.5),
    (16, 1.5, "sqrt_bits", 1.5),  # --margin is the 16-bit eps
    (64, 1.5, "fixed", 1.5),  # the paper's
])
def test_margin_scaling_sets_the_models_margin(bits, margin, scaling, expected):
    model = build_model(_tiny_config(bits=bits, margin=margin, margin_scaling=scaling),
                        (8, 8, 3), text_dim=9)
    assert model.margin == pytest.approx(expected)
    assert model.get_config()["margin"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="margin_scaling"):
        _tiny_config(margin_scaling="linear")


def test_text_linear_path_reaches_the_text_encoder_as_a_hashing_player_weight():
    model = build_model(_tiny_config(), (8, 8, 3), text_dim=9)  # on by default
    assert model.text_encoder.linear_path
    assert any("linear_path" in v.path for v in model.hash_variables)
    plain = build_model(_tiny_config(text_linear_path=False), (8, 8, 3), text_dim=9)
    assert not plain.text_encoder.linear_path


def test_the_hash_centre_term_is_on_by_default_and_can_be_turned_off():
    assert build_model(_tiny_config(), (8, 8, 3), text_dim=9).center_weight == 1.0
    assert build_model(_tiny_config(center_weight=0.0), (8, 8, 3), text_dim=9).center_weight == 0


@pytest.mark.parametrize("backbone, image_shape", [("small_cnn", (8, 8, 3)),
                                                   ("precomputed", (12,))])
def test_standardize_attention_scores_reaches_both_attentions(backbone, image_shape):
    config = _tiny_config(image_backbone=backbone, standardize_attention_scores=True)
    model = build_model(config, image_shape, text_dim=9)
    assert model.image_attention.standardize_scores and model.text_attention.standardize_scores
    plain = build_model(_tiny_config(image_backbone=backbone), image_shape, text_dim=9)
    assert not plain.image_attention.standardize_scores
    assert not plain.text_attention.standardize_scores


@pytest.mark.parametrize("modalities, image, text", [("image", True, False),
                                                     ("text", False, True)])
def test_standardize_attention_modalities_picks_whose_scores(modalities, image, text):
    config = _tiny_config(standardize_attention_scores=True,
                          standardize_attention_modalities=modalities)
    model = build_model(config, (8, 8, 3), text_dim=9)
    assert model.image_attention.standardize_scores == image
    assert model.text_attention.standardize_scores == text
    # The choice means nothing while the scores are not standardized at all.
    plain = build_model(_tiny_config(standardize_attention_modalities=modalities), (8, 8, 3),
                        text_dim=9)
    assert not plain.image_attention.standardize_scores
    assert not plain.text_attention.standardize_scores


def test_standardize_attention_modalities_refuses_an_unknown_modality():
    with pytest.raises(ValueError, match="standardize_attention_modalities"):
        _tiny_config(standardize_attention_modalities="audio")
