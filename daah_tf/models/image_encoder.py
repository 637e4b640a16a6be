"""The image feature-learning module E^I: a CNN feature map f^I in R^{H x W x C}."""

import os

import keras
import tensorflow as tf

BACKBONES = ("vgg19", "small_cnn", "precomputed")
VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_NOTOP_FILE
)


class ImageWeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for but could not be fetched (usually: no network)."""


def _load_vgg19(input_shape, weights):
    """VGG19 without its top; its output is pool5 (7x7x512 at 224x224), as in the paper."""
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"VGG19 weights file {weights!r} does not exist (flag --image_weights)."
        )
    try:
        return keras.applications.VGG19(
            include_top=False, weights=weights, input_shape=tuple(input_shape)
        )
    except Exception as error:  # keras' get_file raises a bare Exception on a failed fetch
        if weights != "imagenet":
            raise
        raise ImageWeightsUnavailableError(
            "Could not fetch the ImageNet weights of VGG19 (no network?). Download "
            f"{VGG19_NOTOP_FILE} from {VGG19_NOTOP_URL} on a machine that can, then pass "
            f"--image_weights=/path/to/{VGG19_NOTOP_FILE} (or --image_weights=none to start "
            f"from random weights). Original error: {error}"
        ) from error


@keras.saving.register_keras_serializable(package="daah_tf")
class ImageEncoder(keras.layers.Layer):
    """Image feature learning E^I: pixels (or cached features) -> feature map f^I.

    Input convention: float images in [0, 255], shape (B, H, W, 3); for `precomputed`, the
    features themselves, (B, h, w, c) or (B, d) (a vector stands in for a feature map, e.g.
    Wiki's 128-d SIFT bag of visual words).

    Args:
        backbone: "vgg19" (the paper's; pool5 of VGG19, 7x7x512 at 224x224), "small_cnn"
            (a few conv blocks, practical on a CPU) or "precomputed" (identity).
        weights: for vgg19: "imagenet", "none", or a path to a Keras weights file
            (e.g. vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 for offline machines).
        cnn_filters: filters per block of small_cnn; each block is conv3x3-ReLU-maxpool2.
        **kwargs: standard Layer arguments.

    Reference: Zhang, Lai, Feng, "Attention-aware Deep Adversarial Hashing for Cross-Modal
    Retrieval", ECCV 2018 (the image network is VGG).
    """

    def __init__(
        self,
        backbone="small_cnn",
        weights="none",
        cnn_filters=(32, 64, 128),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone = backbone
        self.weights_source = weights
        self.cnn_filters = tuple(cnn_filters)
        self.network = None

    def build(self, input_shape):
        if self.backbone == "vgg19":
            weights = None if self.weights_source in (None, "none") else self.weights_source
            self.network = _load_vgg19(tuple(input_shape[1:]), weights)
        elif self.backbone == "small_cnn":
            blocks = []
            for index, filters in enumerate(self.cnn_filters):
                blocks.append(
                    keras.layers.Conv2D(
                        filters, 3, padding="same", activation="relu", name=f"conv{index + 1}"
                    )
                )
                blocks.append(keras.layers.MaxPooling2D(2, name=f"pool{index + 1}"))
            self.network = keras.Sequential(blocks, name="small_cnn")
            self.network.build(tuple(input_shape))

    def call(self, images):
        if self.backbone == "precomputed":
            return tf.cast(images, self.compute_dtype)
        images = tf.cast(images, self.compute_dtype)
        if self.backbone == "vgg19":
            # Caffe-style preprocessing of the original VGG weights: RGB->BGR, mean subtraction.
            images = keras.applications.vgg19.preprocess_input(images)
        else:
            images = images / 255.0
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
        )
        return config

    @classmethod
    def from_config(cls, config):
        # from_config is what loading a saved model runs, and saved variables follow it:
        # fetching ImageNet weights again would be wasted, and fails offline.
        config = dict(config, weights="none")
        return cls(**config)
