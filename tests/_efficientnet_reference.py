"""An independent NumPy forward pass of EfficientNet-Lite0 from a PyTorch state dict (test code).

Written from the architecture's description, not from daah_tf's Keras model: it reads the
state dict in PyTorch's own layouts (OIHW kernels, (C, 1, kh, kw) depthwise kernels) and
computes every layer with plain NumPy, so that the Keras port can be checked against it.
"""

import numpy as np

# (repeats, kernel, stride, expand, out channels) of the seven stages.
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_EPS = 1e-3


def _same_pad(x, kernel, stride):
    """TensorFlow "same" padding of (H, W, C): output ceil(H / stride), extra row/col after."""
    pads = []
    for size in x.shape[:2]:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, (*pads, (0, 0)))


def _conv(x, weight, stride):
    """Dense conv of (H, W, I) with an (O, I, k, k) PyTorch kernel -> (H', W', O)."""
    out_channels, _, k, _ = weight.shape
    x = _same_pad(x, k, stride)
    rows = (x.shape[0] - k) // stride + 1
    cols = (x.shape[1] - k) // stride + 1
    out = np.zeros((rows, cols, out_channels), np.float64)
    for dy in range(k):
        for dx in range(k):
            patch = x[dy:dy + stride * rows:stride, dx:dx + stride * cols:stride]
            out += patch @ weight[:, :, dy, dx].T
    return out


def _depthwise(x, weight, stride):
    """Depthwise conv of (H, W, C) with a (C, 1, k, k) PyTorch kernel."""
    k = weight.shape[-1]
    x = _same_pad(x, k, stride)
    rows = (x.shape[0] - k) // stride + 1
    cols = (x.shape[1] - k) // stride + 1
    out = np.zeros((rows, cols, x.shape[2]), np.float64)
    for dy in range(k):
        for dx in range(k):
            patch = x[dy:dy + stride * rows:stride, dx:dx + stride * cols:stride]
            out += patch * weight[:, 0, dy, dx]
    return out


def _bn(x, state, prefix):
    scale = state[prefix + "weight"] / np.sqrt(state[prefix + "running_var"] + _EPS)
    return (x - state[prefix + "running_mean"]) * scale + state[prefix + "bias"]


def _relu6(x):
    return np.clip(x, 0.0, 6.0)


def features(image, state):
    """(H, W, 3) float RGB in [0, 255] -> (H/32, W/32, 1280) float64 head feature map."""
    x = (np.asarray(image, np.float64) - 127.0) / 128.0
    x = _relu6(_bn(_conv(x, state["_conv_stem.weight"], 2), state, "_bn0."))
    index, channels = 0, 32
    for repeats, kernel, stride, expand, out in _STAGES:
        for repeat in range(repeats):
            p = f"_blocks.{index}."
            step = stride if repeat == 0 else 1
            inputs = x
            if expand != 1:
                x = _relu6(_bn(_conv(x, state[p + "_expand_conv.weight"], 1), state, p + "_bn0."))
            assert state[p + "_depthwise_conv.weight"].shape[-1] == kernel
            x = _relu6(_bn(_depthwise(x, state[p + "_depthwise_conv.weight"], step), state,
                           p + "_bn1."))
            x = _bn(_conv(x, state[p + "_project_conv.weight"], 1), state, p + "_bn2.")
            if step == 1 and channels == out:
                x = x + inputs
            channels, index = out, index + 1
    return _relu6(_bn(_conv(x, state["_conv_head.weight"], 1), state, "_bn1."))


def logits(feature_map, state):
    """(h, w, 1280) -> (1000,) ImageNet logits: global average pool, then the classifier."""
    pooled = feature_map.mean(axis=(0, 1))
    return state["_fc.weight"] @ pooled + state["_fc.bias"]
