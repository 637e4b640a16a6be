"""The DAAH building blocks: straight-through threshold, attentions, encoders, hash heads."""

from __future__ import annotations

import re

import h5py
import keras
import numpy as np
import pytest

from daah_tf.models import (
    ImageEncoder,
    ImageWeightsUnavailableError,
    image_encoder,
)


def test_precomputed_image_encoder_is_identity():
    features = np.random.default_rng(7).normal(size=(3, 128)).astype(np.float32)
    np.testing.assert_array_equal(ImageEncoder(backbone="precomputed")(features), features)


@pytest.mark.parametrize("pool_last_block, side", [(True, 4), (False, 8)])
def test_small_cnn_last_block_pools_only_when_asked(pool_last_block, side):
    # Two blocks on 16x16 images: 4x4 cells with every block pooled, 8x8 without the last
    # pool. The layer's own default pools every block, so layers saved before the setting
    # existed rebuild as they were trained.
    encoder = ImageEncoder(backbone="small_cnn", cnn_filters=(4, 8),
                           cnn_pool_last_block=pool_last_block)
    images = np.random.default_rng(3).uniform(0, 255, size=(2, 16, 16, 3)).astype(np.float32)
    assert encoder(images).shape == (2, side, side, 8)
    config = encoder.get_config()
    assert config["cnn_pool_last_block"] is pool_last_block
    assert ImageEncoder.from_config(config).cnn_pool_last_block is pool_last_block
    assert ImageEncoder(backbone="small_cnn").cnn_pool_last_block is True


def test_vgg19_random_weights_build_at_32x32():
    encoder = ImageEncoder(backbone="vgg19", weights="none")
    encoder.build((None, 32, 32, 3))
    assert tuple(encoder.compute_output_shape((None, 32, 32, 3))) == (None, 1, 1, 512)
    images = np.random.default_rng(10).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    features = encoder(images)
    assert features.shape == (2, 1, 1, 512)
    assert np.all(np.isfinite(features.numpy()))


def test_vgg19_imagenet_weights_offline_raise_a_clear_error(monkeypatch):
    def failed_fetch(*args, **kwargs):
        raise Exception(  # what keras' get_file raises
            "URL fetch failure on https://storage.googleapis.com/...: None -- "
            "[Errno -3] Temporary failure in name resolution"
        )

    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", failed_fetch)
    monkeypatch.setattr(keras.utils, "get_file", failed_fetch)
    encoder = ImageEncoder(backbone="vgg19", weights="imagenet")
    with pytest.raises(ImageWeightsUnavailableError) as error:
        encoder.build((None, 32, 32, 3))
    message = str(error.value)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--image_weights" in message
    assert "Temporary failure in name resolution" in message
    assert isinstance(error.value.__cause__, Exception)


def test_vgg19_missing_weights_file(tmp_path):
    path = str(tmp_path / "nowhere" / image_encoder.VGG19_NOTOP_FILE)
    encoder = ImageEncoder(backbone="vgg19", weights=path)
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        encoder.build((None, 32, 32, 3))


def test_vgg19_from_config_never_fetches_weights_again():
    config = ImageEncoder(backbone="vgg19", weights="imagenet").get_config()
    assert config["weights"] == "imagenet"
    assert ImageEncoder.from_config(config).get_config()["weights"] == "none"


def test_vgg19_local_weights_files_load(tmp_path):
    reference = keras.applications.VGG19(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    # The Keras 3 format, and the legacy HDF5 layout of the file Keras downloads.
    native = tmp_path / "vgg19_notop.weights.h5"
    reference.save_weights(native)
    legacy = tmp_path / image_encoder.VGG19_NOTOP_FILE
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(legacy, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, reference)
    images = np.random.default_rng(11).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    expected = reference(keras.applications.vgg19.preprocess_input(images.copy())).numpy()
    for path in (native, legacy):
        encoder = ImageEncoder(backbone="vgg19", weights=str(path))
        encoder.build((None, 32, 32, 3))
        for loaded, saved in zip(encoder.network.weights, reference.weights, strict=True):
            np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
        np.testing.assert_array_equal(encoder(images).numpy(), expected)
