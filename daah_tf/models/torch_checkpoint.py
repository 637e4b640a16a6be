"""Reads a PyTorch checkpoint's state dict into NumPy arrays, without torch and without
unpickling arbitrary objects.

A `.pth` file is a pickle: loading one with `pickle.load` (or `torch.load` without
`weights_only`) runs whatever callables the file names, so a checkpoint from the network is
code. This reader admits only the few globals a state dict of tensors needs:

    collections.OrderedDict          the state dict itself (and the empty backward-hook dicts)
    torch._utils._rebuild_tensor_v2  a tensor: (storage, storage_offset, size, stride, ...)
    torch.<Type>Storage              the storage classes, only as tags of persistent ids

and builds every tensor as a NumPy view of its storage's bytes (dtype, shape, strides and
storage offset as recorded). Any other global raises `CheckpointError` naming the file and the
refused global, before anything is called.

Both of PyTorch's layouts are read:
    - zip (torch >= 1.6): `ARCHIVE/data.pkl`, storages in `ARCHIVE/data/<key>`;
    - legacy (the original tar-less stream): magic-number, protocol and system-info pickles,
      then the state-dict pickle, then a pickle of the storage keys, then each storage in that
      order as an int64 element count followed by its raw little-endian bytes.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

# torch/serialization.py: MAGIC_NUMBER, PROTOCOL_VERSION of the legacy format.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """A checkpoint that is not a plain state dict of tensors, or a damaged one."""


class _StorageType:
    """Stands in for torch.<Type>Storage: only its dtype is used."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage named by a persistent id; its bytes are filled in once they are read."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel
        self.array = None  # (numel,) of dtype


class _Tensor:
    """A tensor to be built once its storage's bytes are known."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def to_numpy(self, path, name):
        flat = self.storage.array
        if flat is None:
            raise CheckpointError(f"{path}: tensor {name!r}: its storage "
                                  f"{self.storage.key!r} was never read")
        itemsize = flat.dtype.itemsize
        # The farthest element the view touches must lie inside the storage.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if any(n == 0 for n in self.size):
            last = self.offset - 1
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(flat):
            raise CheckpointError(f"{path}: tensor {name!r} (size {self.size}, stride "
                                  f"{self.stride}, offset {self.offset}) lies outside its "
                                  f"storage of {len(flat)} elements")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(s * itemsize for s in self.stride), writeable=False)
        return np.array(view)  # a contiguous copy: independent of the file's buffer


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2's signature, building a _Tensor placeholder."""
    del requires_grad, backward_hooks, metadata  # training state, not values
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    return _Tensor(storage, storage_offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class admits only what a state dict of tensors needs."""

    def __init__(self, stream, path):
        super().__init__(stream)
        self.path = path
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(
            f"{self.path}: refused global {module}.{name}: this reader only admits a state "
            "dict of tensors (collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
            "torch.*Storage); the file may hold code, so it is not loaded")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError(f"{self.path}: storage views are not supported")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = _Storage(pid[1].dtype, key, int(pid[4]))
        return self.storages[key]


class _PlainUnpickler(pickle.Unpickler):
    """Numbers, strings, lists, dicts only: every global and persistent id is refused."""

    def __init__(self, stream, path):
        super().__init__(stream)
        self.path = path

    def find_class(self, module, name):
        raise CheckpointError(f"{self.path}: refused global {module}.{name} in a header "
                              "pickle (only plain values belong there)")

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r} in a header")


def _load_plain(stream, path):
    # Reads exactly one pickle: the stream is left at the first byte after its STOP.
    return _PlainUnpickler(stream, path).load()


def _unpickle_state_dict(stream, path):
    unpickler = _StateDictUnpickler(stream, path)
    try:
        state = unpickler.load()
    except CheckpointError:
        raise
    except Exception as error:  # a damaged pickle raises many types
        raise CheckpointError(f"{path}: not a readable state-dict pickle ({error})") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    bad = [key for key, value in state.items() if not isinstance(value, _Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    return state, unpickler.storages


def _read_legacy(content, path):
    stream = io.BytesIO(content)
    try:
        magic = _load_plain(stream, path)
        protocol = _load_plain(stream, path)
        system = _load_plain(stream, path)
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({error})") from error
    if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (magic {magic!r}, protocol "
                              f"{protocol!r})")
    if not isinstance(system, dict) or not system.get("little_endian", False):
        raise CheckpointError(f"{path}: only little-endian checkpoints are supported")
    state, storages = _unpickle_state_dict(stream, path)
    try:
        keys = _load_plain(stream, path)  # a list of str
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: damaged list of storages ({error})") from error
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(f"{path}: storage {key!r} is listed but never used")
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError(f"{path}: truncated at storage {key!r}")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        data = stream.read(nbytes)
        if numel != storage.numel or len(data) != nbytes:
            raise CheckpointError(f"{path}: storage {key!r}: {numel} elements of "
                                  f"{storage.numel} expected, {len(data)} bytes read")
        storage.array = np.frombuffer(data, dtype=storage.dtype.newbyteorder("<"))
    return state


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip without exactly one data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        state, storages = _unpickle_state_dict(io.BytesIO(archive.read(pickles[0])), path)
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise CheckpointError(f"{path}: storage file {member} is missing")
            data = archive.read(member)
            storage.array = np.frombuffer(data, dtype=storage.dtype.newbyteorder("<"))
            if len(storage.array) < storage.numel:
                raise CheckpointError(f"{path}: storage {member} is truncated")
    return state


def load_state_dict(path):
    """Reads a PyTorch state dict: {name: np.ndarray}, in the file's order.

    Args:
        path: a `.pth`/`.pt` file written by `torch.save(model.state_dict(), path)` (zip or
            legacy layout).

    Returns:
        An OrderedDict of name -> NumPy array (a contiguous copy, with the tensor's dtype and
        shape).

    Raises:
        CheckpointError naming the file: a refused global (anything but a state dict of
        tensors), a damaged or truncated file.
        OSError: the file cannot be read.
    """
    path = str(path)
    if zipfile.is_zipfile(path):
        state = _read_zip(path)
    else:
        with open(path, "rb") as handle:
            state = _read_legacy(handle.read(), path)
    return collections.OrderedDict(
        (name, tensor.to_numpy(path, name)) for name, tensor in state.items())
