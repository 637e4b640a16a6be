"""Run settings as small frozen dataclasses, their allowed values, and the checks that combine
settings (no absl and no TensorFlow here: library code never reads flags, and the command line
reads these before TensorFlow loads).

`daah_tf.flags` turns command-line flags into these; the run directory keeps them as
config.json, so a run can be rebuilt without its command line.

A dataclass refuses, with a ValueError naming the setting, a value outside its allowed values
and settings that contradict each other (`MODEL_RULES`, `TRAIN_RULES`, `RUN_RULES`).
`daah_tf.flags` registers the same rules as flag validators, so the command line and the library
refuse the same settings with the same explanation ("--loss=dcmh ..." there, "model.loss=dcmh
..." here).
"""

import dataclasses
import json
from collections.abc import Callable
from typing import NamedTuple

# ------------------------------------------------------------------------------------------
# Allowed values. The modules that act on a setting import its tuple from here (and keep their
# older names for it, e.g. `daah_tf.models.daah.UPDATE_MODES`).

DATASETS = ("synthetic", "wiki", "mirflickr25k", "nuswide", "iaprtc12", "folder")
TEXT_WEIGHTINGS = ("count", "tf_idf")

# Pretrained networks: their last feature map before pooling is f^I (7x7 at 224x224).
APPLICATION_BACKBONES = ("resnet50", "mobilenet_v2", "efficientnet_b0")  # keras.applications
PRETRAINED_BACKBONES = ("vgg19", "efficientnet_lite0", *APPLICATION_BACKBONES)
BACKBONES = (*PRETRAINED_BACKBONES, "small_cnn", "precomputed")
ATTENTION_CHOICES = ("adversarial", "none")
ATTENTION_GRADIENTS = ("unattended", "both", "unattended_and_text")
LOSSES = ("daah", "dcmh")
SIMILARITY_KINDS = ("binary", "count", "cosine")
UPDATE_MODES = ("alternating", "simultaneous")
IMAGE_HEAD_POOLINGS = ("flatten", "average")
MASK_ESTIMATORS = ("logit", "probability")
# Which attentions standardize their scores when standardize_attention_scores is on.
STANDARDIZED_MODALITIES = ("both", "image", "text")
ATTENTION_OBJECTIVES = ("adversarial_retrieval", "adversarial")
# Which terms of Eq. 3 the hashing player minimises: both (the paper's), or F_{T->I^} only
# (erased images must still be found by text) or F_{I->T^} only (erased texts by images).
HASH_ADVERSARIAL_TERMS = ("both", "t2i", "i2t")
RETRIEVAL_VIEWS = ("attended", "whole", "residual", "gated")
# The text side's view: "same" follows --retrieval_view.
TEXT_RETRIEVAL_VIEWS = ("same", *RETRIEVAL_VIEWS)
# How the triplet margin follows the code length: "fixed" (the paper's eps at every length) or
# "sqrt_bits" (eps * sqrt(q / 16), losses.scaled_margin).
MARGIN_SCALINGS = ("fixed", "sqrt_bits")

MIXED_PRECISIONS = ("none", "bfloat16", "float16")
NONFINITE_POLICIES = ("stop", "skip_batch")
ATTENTION_SCHEDULES = ("constant", "cosine")
STRATEGIES = ("none", "mirrored", "multi_worker")

# Setting -> its allowed values (setting names are unique across the three dataclasses).
CHOICES = {
    "dataset": DATASETS,
    "text_weighting": TEXT_WEIGHTINGS,
    "image_backbone": BACKBONES,
    "attention": ATTENTION_CHOICES,
    "attention_gradient": ATTENTION_GRADIENTS,
    "loss": LOSSES,
    "similarity": SIMILARITY_KINDS,
    "update": UPDATE_MODES,
    "image_head_pooling": IMAGE_HEAD_POOLINGS,
    "mask_estimator": MASK_ESTIMATORS,
    "standardize_attention_modalities": STANDARDIZED_MODALITIES,
    "attention_objective": ATTENTION_OBJECTIVES,
    "hash_adversarial_terms": HASH_ADVERSARIAL_TERMS,
    "retrieval_view": RETRIEVAL_VIEWS,
    "text_retrieval_view": TEXT_RETRIEVAL_VIEWS,
    "margin_scaling": MARGIN_SCALINGS,
    "mixed_precision": MIXED_PRECISIONS,
    "on_nonfinite": NONFINITE_POLICIES,
    "attention_schedule": ATTENTION_SCHEDULES,
    "distribution": STRATEGIES,
}


# ------------------------------------------------------------------------------------------
# Settings that must agree with each other.


class _Spelled(dict):
    """A format_map mapping that spells any setting name with `spell`."""

    def __init__(self, spell):
        super().__init__()
        self.spell = spell

    def __missing__(self, name):
        return self.spell(name)


class Rule(NamedTuple):
    """Settings that must agree with each other.

    settings: the names of the settings the rule reads.
    holds: {setting: value} -> True when the settings agree.
    message: what to do when they do not, naming settings as {setting} placeholders, so that
        the command line says `--loss` and the library `model.loss`.
    """

    settings: tuple
    holds: Callable
    message: str

    def explain(self, spell):
        """The message with each {setting} written as spell(setting)."""
        return self.message.format_map(_Spelled(spell))


WEIGHTS_NEED_PRETRAINED = Rule(
    ("image_weights", "image_backbone"),
    lambda v: v["image_weights"] == "none" or v["image_backbone"] in PRETRAINED_BACKBONES,
    "{image_weights} is for {image_backbone}=" + "|".join(PRETRAINED_BACKBONES)
    + " (the pretrained backbones)")
DCMH_WITHOUT_ATTENTION = Rule(
    ("loss", "attention"),
    lambda v: v["loss"] != "dcmh" or v["attention"] == "none",
    "{loss}=dcmh is the attention-free baseline: add {attention}=none")
DAAH_TERMS_NEED_DAAH_LOSS = Rule(
    ("loss", "quantization_weight", "binary_ranking_share", "center_weight"),
    lambda v: v["loss"] != "dcmh" or not (v["quantization_weight"] or v["binary_ranking_share"]
                                          or v["center_weight"]),
    "{quantization_weight}, {binary_ranking_share} and {center_weight} are terms of "
    "{loss}=daah, which {loss}=dcmh would ignore: set them to 0 ({center_weight} is 1 by "
    "default; the baseline has its own {dcmh_quantization_weight} and {dcmh_balance_weight})")
LOGICAL_DEVICES_NEED_MIRRORED = Rule(
    ("distribution", "logical_cpu_devices"),
    lambda v: v["logical_cpu_devices"] <= 1 or v["distribution"] == "mirrored",
    "{logical_cpu_devices} is for {distribution}=mirrored")
WEIGHT_AVERAGE_DECAY_RANGE = Rule(
    ("weight_average_decay",),
    lambda v: 0.0 <= v["weight_average_decay"] < 1.0,
    "{weight_average_decay} must be in [0, 1): 0 for no averaging, e.g. 0.99 for an average "
    "over about 100 steps")
CACHE_NEEDS_PRECOMPUTED = Rule(
    ("image_backbone", "feature_cache"),
    lambda v: not v["feature_cache"] or v["image_backbone"] == "precomputed",
    "{feature_cache} needs {image_backbone}=precomputed")
WIKI_IS_VECTORS = Rule(
    ("dataset", "image_backbone"),
    lambda v: v["dataset"] != "wiki" or v["image_backbone"] == "precomputed",
    "{dataset}=wiki gives image feature vectors: use {image_backbone}=precomputed")
# Checked on the command line only. A DataConfig without a data folder is legitimate (a
# finished run evaluated on another dataset gets its folder later); the library's check is
# `daah_tf.data.registry.load_dataset`, which raises DatasetError when it has none.
DATA_DIR_GIVEN = Rule(
    ("dataset", "data_dir", "feature_cache"),
    lambda v: v["dataset"] == "synthetic" or bool(v["data_dir"] or v["feature_cache"]),
    "{data_dir} (or a {feature_cache}) is required for every dataset but synthetic")

MODEL_RULES = (WEIGHTS_NEED_PRETRAINED, DCMH_WITHOUT_ATTENTION,  # checked by ModelConfig
               DAAH_TERMS_NEED_DAAH_LOSS)
TRAIN_RULES = (LOGICAL_DEVICES_NEED_MIRRORED, WEIGHT_AVERAGE_DECAY_RANGE)  # by TrainConfig
RUN_RULES = (CACHE_NEEDS_PRECOMPUTED, WIKI_IS_VECTORS)  # across the parts: by RunConfig
# Every rule, in the order the command line checks them (it reports the first broken one).
RULES = (DATA_DIR_GIVEN, CACHE_NEEDS_PRECOMPUTED, WEIGHTS_NEED_PRETRAINED, WIKI_IS_VECTORS,
         LOGICAL_DEVICES_NEED_MIRRORED, WEIGHT_AVERAGE_DECAY_RANGE, DCMH_WITHOUT_ATTENTION,
         DAAH_TERMS_NEED_DAAH_LOSS)


def _values(config):
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


def _qualified(name):
    """A setting as the library names it: model.loss, data.dataset, train.distribution."""
    return f"{_SECTION[name]}.{name}"


def _check(values, rules):
    """Raises ValueError for the first setting outside its choices, then the first broken rule."""
    for name, value in values.items():
        choices = CHOICES.get(name)
        if choices is not None and value not in choices:
            raise ValueError(f"{_qualified(name)} must be one of {choices}, got {value!r}")
    for rule in rules:
        if not rule.holds(values):
            raise ValueError(rule.explain(_qualified))


# ------------------------------------------------------------------------------------------
# The settings.


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data, and how it is split and fed."""

    dataset: str = "synthetic"
    data_dir: str = ""
    feature_cache: str = ""
    image_size: int = 48
    batch_size: int = 64
    validation_fraction: float = 0.1
    seed: int = 0
    skip_bad_rows: bool = False
    synthetic_pairs: int = 3000
    synthetic_classes: int = 8
    text_vocab_size: int = 2000
    text_ngrams: int = 1
    text_min_count: int = 1
    text_weighting: str = "count"  # "count" | "tf_idf"
    augment: bool = True

    def __post_init__(self):
        _check(_values(self), ())


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The networks and the game."""

    bits: int = 32
    image_backbone: str = "small_cnn"
    image_weights: str = "none"
    cnn_filters: tuple = (16, 32, 64)
    cnn_pool_last_block: bool = False  # small_cnn: 12x12 cells at 48 px (True: 6x6)
    image_hidden_units: tuple = (512, 512)
    text_units: tuple = (512, 256)
    text_linear_path: bool = True  # f = MLP(x) + W x (paper: the MLP alone, False)
    dropout: float = 0.0
    attention: str = "adversarial"  # "adversarial" | "none"
    adversarial: bool = True
    attention_gradient: str = "unattended"  # "unattended" | "both" | "unattended_and_text"
    loss: str = "daah"  # "daah" | "dcmh" (the DCMH-style baseline, with attention "none")
    dcmh_quantization_weight: float = 1.0
    dcmh_balance_weight: float = 1.0
    margin: float = 1.0
    margin_scaling: str = "fixed"  # (the paper's) | "sqrt_bits": eps * sqrt(bits / 16)
    similarity: str = "binary"
    update: str = "alternating"
    image_head_pooling: str = "flatten"  # "flatten" (VGG fc6) | "average"
    mask_estimator: str = "logit"  # "logit" | "probability" (the literal reading)
    standardize_attention_scores: bool = False  # scores -> mean 0, std 1 before the softmax
    standardize_attention_modalities: str = "both"  # | "image" | "text": whose scores, if on
    attention_objective: str = "adversarial_retrieval"  # | "adversarial" (the paper's game)
    adversarial_weight: float = 0.1  # the hashing player's weight on L_adv (the paper's: 1)
    hash_adversarial_terms: str = "both"  # the hashing player's terms of L_adv (paper: both)
    quantization_weight: float = 0.0  # the hashing player's weight on Q (paper: no such term)
    binary_ranking_share: float = 0.0  # share of L_ret on sign(H), straight-through (paper: 0)
    center_weight: float = 1.0  # the hashing player's weight on the hash-centre term C (paper: 0)
    attention_area_weight: float = 0.0  # the attention player's cost on the image mask's share
    retrieval_view: str = "gated"  # | "attended" (the paper's H = D(Z * f)) | "whole" | "residual"
    text_retrieval_view: str = "same"  # the text codes' view; "same": retrieval_view
    # A frozen backbone on pictures: features are cached on the first run, heads train on them.
    freeze_backbone: bool = False

    def __post_init__(self):
        _check(_values(self), MODEL_RULES)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation and the run's bookkeeping."""

    model_dir: str = ""
    epochs: int = 15
    hash_learning_rate: float = 1e-3
    attention_learning_rate: float = 1e-3
    attention_schedule: str = "constant"  # (the paper's) | "cosine" (attention_schedule.py)
    eval_every: int = 1
    keep_checkpoints: int = 3
    early_stopping_patience: int = 10  # evaluations without a better validation mAP; 0: never stop
    weight_average_decay: float = 0.0  # 0: select the live weights; else (0, 1): their average
    jit_compile: bool = False
    mixed_precision: str = "none"
    deterministic: bool = False
    max_steps_per_epoch: int = 0
    on_nonfinite: str = "stop"  # "stop" | "skip_batch"
    distribution: str = "none"  # "none" | "mirrored" | "multi_worker"
    logical_cpu_devices: int = 0
    verbose: int = 1
    cache_dir: str = ""  # root of automatic feature caches ("": next to the data, or user cache)

    def __post_init__(self):
        _check(_values(self), TRAIN_RULES)


# Settings added after runs were already being saved, whose default is not the behaviour those
# runs had: a config.json without one was written before it existed and means this value (a
# restored run must rebuild the network it trained, e.g. without the linear path's weights).
ABSENT_MEANS = {
    "model": {"text_linear_path": False, "center_weight": 0.0, "cnn_pool_last_block": True},
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self):
        # Each part checked its own settings when it was built; RUN_RULES read several parts.
        _check({**_values(self.data), **_values(self.model), **_values(self.train)}, RUN_RULES)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """The RunConfig of a config.json; a setting it lacks takes its `ABSENT_MEANS` value if
        it has one (the file predates that setting), else its default."""
        raw = json.loads(text)

        def build(part, kind):
            values = raw.get(part, {})
            fields = {f.name: f for f in dataclasses.fields(kind)}
            unknown = set(values) - set(fields)
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields in config: {sorted(unknown)}")
            values = {**ABSENT_MEANS.get(part, {}), **values}
            return kind(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
            })

        return cls(data=build("data", DataConfig), model=build("model", ModelConfig),
                   train=build("train", TrainConfig))


# Setting name -> the RunConfig part that holds it ("data", "model" or "train").
_SECTION = {field.name: part.name for part in dataclasses.fields(RunConfig)
            for field in dataclasses.fields(part.type)}
