"""The DAAH networks: encoders E, attention G, hash heads D, and the two-player model."""

from daah_tf.models.daah import DAAH
from daah_tf.models.factory import build_model
from daah_tf.models.image_encoder import ImageEncoder, ImageWeightsUnavailableError
from daah_tf.models.image_hash_head import ImageHashHead
from daah_tf.models.spatial_attention import SpatialAttention
from daah_tf.models.straight_through import straight_through_threshold
from daah_tf.models.text_encoder import TextEncoder
from daah_tf.models.text_hash_head import TextHashHead
from daah_tf.models.vector_attention import VectorAttention

__all__ = [
    "DAAH",
    "ImageEncoder",
    "ImageHashHead",
    "ImageWeightsUnavailableError",
    "SpatialAttention",
    "TextEncoder",
    "TextHashHead",
    "VectorAttention",
    "build_model",
    "straight_through_threshold",
]
