"""Run settings as small frozen dataclasses (no absl here: library code never reads flags).

`daah_tf.flags` turns command-line flags into these; the run directory keeps them as
config.json, so a run can be rebuilt without its command line.
"""

import dataclasses
import json


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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The networks and the game."""

    bits: int = 32
    image_backbone: str = "small_cnn"
    image_weights: str = "none"
    cnn_filters: tuple = (16, 32, 64)
    image_hidden_units: tuple = (512, 512)
    text_units: tuple = (512, 256)
    dropout: float = 0.0
    attention: str = "adversarial"  # "adversarial" | "none"
    adversarial: bool = True
    attention_gradient: str = "unattended"  # "unattended" | "both"
    loss: str = "daah"  # "daah" | "dcmh" (the DCMH-style baseline, with attention "none")
    dcmh_quantization_weight: float = 1.0
    dcmh_balance_weight: float = 1.0
    margin: float = 1.0
    similarity: str = "binary"
    update: str = "alternating"
    image_head_pooling: str = "flatten"  # "flatten" (VGG fc6) | "average"
    mask_estimator: str = "logit"  # "logit" | "probability" (the literal reading)
    attention_objective: str = "adversarial_retrieval"  # | "adversarial" (the paper's game)
    adversarial_weight: float = 1.0  # the hashing player's weight on L_adv (the paper's: 1)
    retrieval_view: str = "gated"  # | "attended" (the paper's H = D(Z * f)) | "whole" | "residual"
    # A frozen backbone on pictures: features are cached on the first run, heads train on them.
    freeze_backbone: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation and the run's bookkeeping."""

    model_dir: str = ""
    epochs: int = 15
    hash_learning_rate: float = 1e-3
    attention_learning_rate: float = 1e-3
    eval_every: int = 1
    keep_checkpoints: int = 3
    early_stopping_patience: int = 0
    jit_compile: bool = False
    mixed_precision: str = "none"
    deterministic: bool = False
    max_steps_per_epoch: int = 0
    on_nonfinite: str = "stop"  # "stop" | "skip_batch"
    distribution: str = "none"  # "none" | "mirrored" | "multi_worker"
    logical_cpu_devices: int = 0
    verbose: int = 1
    cache_dir: str = ""  # root of automatic feature caches ("": next to the data, or user cache)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        raw = json.loads(text)

        def build(kind, values):
            fields = {f.name: f for f in dataclasses.fields(kind)}
            unknown = set(values) - set(fields)
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields in config: {sorted(unknown)}")
            return kind(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
            })

        return cls(
            data=build(DataConfig, raw.get("data", {})),
            model=build(ModelConfig, raw.get("model", {})),
            train=build(TrainConfig, raw.get("train", {})),
        )
