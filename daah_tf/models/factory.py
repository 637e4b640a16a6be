"""Builds a DAAH model from a ModelConfig and the shapes of the inputs."""

from daah_tf.config import ATTENTION_CHOICES, ModelConfig
from daah_tf.losses import scaled_margin
from daah_tf.models.daah import DAAH
from daah_tf.models.image_encoder import ImageEncoder
from daah_tf.models.image_hash_head import ImageHashHead
from daah_tf.models.spatial_attention import SpatialAttention
from daah_tf.models.text_encoder import TextEncoder
from daah_tf.models.text_hash_head import TextHashHead
from daah_tf.models.vector_attention import VectorAttention


def attention_for(feature_shape, estimator="logit", standardize_scores=False):
    """SpatialAttention for (B, H, W, C) features, VectorAttention for (B, d)."""
    kind = SpatialAttention if len(feature_shape) == 4 else VectorAttention
    return kind(estimator=estimator, standardize_scores=standardize_scores)


def build_model(config: ModelConfig, image_shape, text_dim):
    """A built (not compiled) DAAH model.

    Args:
        config: the model settings.
        image_shape: shape of one image input without the batch, e.g. (48, 48, 3), a cached
            feature map (7, 7, 512), or a vector (128,).
        text_dim: V, the bag-of-words size.
    """
    if config.attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, got {config.attention!r}")
    image_encoder = ImageEncoder(
        backbone=config.image_backbone,
        weights=config.image_weights,
        cnn_filters=config.cnn_filters,
        cnn_pool_last_block=config.cnn_pool_last_block,
        name="image_encoder",
    )
    text_encoder = TextEncoder(units=config.text_units, dropout=config.dropout,
                               linear_path=config.text_linear_path, name="text_encoder")
    image_input = (None, *image_shape)
    image_encoder.build(image_input)
    feature_shape = image_encoder.compute_output_shape(image_input)
    with_attention = config.attention == "adversarial"
    standardize = {modality: config.standardize_attention_scores
                   and config.standardize_attention_modalities in ("both", modality)
                   for modality in ("image", "text")}
    model = DAAH(
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        image_attention=(attention_for(feature_shape, config.mask_estimator,
                                       standardize["image"])
                         if with_attention else None),
        text_attention=(VectorAttention(estimator=config.mask_estimator,
                                        standardize_scores=standardize["text"])
                        if with_attention else None),
        image_head=ImageHashHead(
            config.bits, hidden_units=config.image_hidden_units, dropout=config.dropout,
            pooling=config.image_head_pooling,
            name="image_head",
        ),
        text_head=TextHashHead(config.bits, name="text_head"),
        margin=scaled_margin(config.margin, config.bits, config.margin_scaling),
        similarity=config.similarity,
        update=config.update,
        adversarial=config.adversarial,
        attention_gradient=config.attention_gradient,
        loss=config.loss,
        dcmh_weights=(config.dcmh_quantization_weight, config.dcmh_balance_weight),
        attention_objective=config.attention_objective,
        retrieval_view=config.retrieval_view,
        text_retrieval_view=(None if config.text_retrieval_view == "same"
                             else config.text_retrieval_view),
        adversarial_weight=config.adversarial_weight,
        hash_adversarial_terms=config.hash_adversarial_terms,
        quantization_weight=config.quantization_weight,
        binary_ranking_share=config.binary_ranking_share,
        center_weight=config.center_weight,
        attention_area_weight=config.attention_area_weight,
        name="daah",
    )
    model.build({"image": image_input, "text": (None, int(text_dim))})
    return model
