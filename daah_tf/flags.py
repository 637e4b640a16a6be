"""Every command-line flag of `python -m daah_tf.train`, and flags -> RunConfig.

Only this module and the entry points read FLAGS; the library receives dataclasses. Values are
checked here (absl validators, with the config dataclasses' rules for settings that must agree),
so a bad value stops the program with a clear message before anything is written. No TensorFlow
here: `--help` and a bad flag answer at once.
"""

import os

from absl import flags

from daah_tf.config import (
    ATTENTION_CHOICES,
    ATTENTION_GRADIENTS,
    ATTENTION_OBJECTIVES,
    ATTENTION_SCHEDULES,
    BACKBONES,
    DATASETS,
    HASH_ADVERSARIAL_TERMS,
    IMAGE_HEAD_POOLINGS,
    LOSSES,
    MARGIN_SCALINGS,
    MASK_ESTIMATORS,
    MIXED_PRECISIONS,
    NONFINITE_POLICIES,
    PRETRAINED_BACKBONES,
    RETRIEVAL_VIEWS,
    RULES,
    SIMILARITY_KINDS,
    STANDARDIZED_MODALITIES,
    STRATEGIES,
    TEXT_RETRIEVAL_VIEWS,
    TEXT_WEIGHTINGS,
    UPDATE_MODES,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)

FLAGS = flags.FLAGS
_DATA, _MODEL, _TRAIN = DataConfig(), ModelConfig(), TrainConfig()

# Data.
flags.DEFINE_enum("dataset", _DATA.dataset, DATASETS, "Which dataset to train on.")
flags.DEFINE_string("data_dir", _DATA.data_dir, "Folder of the dataset's files (not synthetic).")
flags.DEFINE_string("feature_cache", _DATA.feature_cache,
                    "Folder written by tools/cache_features.py "
                    "(with --image_backbone=precomputed).")
flags.DEFINE_integer("image_size", _DATA.image_size,
                     "Side of the square images fed to the CNN (224 for vgg19).", lower_bound=16)
flags.DEFINE_integer("batch_size", _DATA.batch_size,
                     "Pairs per batch; every in-batch triplet is used.", lower_bound=4)
flags.DEFINE_float("validation_fraction", _DATA.validation_fraction,
                   "Share of the training pairs held out for model selection.",
                   lower_bound=0.0, upper_bound=0.9)
flags.DEFINE_integer("seed", _DATA.seed, "Seed of splits, data order, augmentation and weights.")
flags.DEFINE_boolean("skip_bad_rows", _DATA.skip_bad_rows,
                     "Skip unreadable rows with a warning instead of stopping.")
flags.DEFINE_integer("synthetic_pairs", _DATA.synthetic_pairs, "Synthetic dataset: pairs.",
                     lower_bound=100)
flags.DEFINE_integer("synthetic_classes", _DATA.synthetic_classes, "Synthetic dataset: labels.",
                     lower_bound=2)
flags.DEFINE_integer("text_vocab_size", _DATA.text_vocab_size,
                     "Raw text: most frequent n-grams kept.", lower_bound=1)
flags.DEFINE_integer("text_ngrams", _DATA.text_ngrams,
                     "Raw text: n-grams of 1..N words (characters for Chinese/Japanese).",
                     lower_bound=1, upper_bound=5)
flags.DEFINE_integer("text_min_count", _DATA.text_min_count,
                     "Raw text: minimum training count of a kept n-gram.", lower_bound=1)
flags.DEFINE_enum("text_weighting", _DATA.text_weighting, TEXT_WEIGHTINGS,
                  "Raw text: bag of n-gram counts, or counts weighted by the training split's "
                  "inverse document frequency.")
flags.DEFINE_boolean("augment", _DATA.augment, "Random crop and flip of training images.")

# Model.
flags.DEFINE_integer("bits", _MODEL.bits, "Code length q.", lower_bound=1, upper_bound=4096)
flags.DEFINE_enum("image_backbone", _MODEL.image_backbone, BACKBONES, "Image network E^I.")
flags.DEFINE_string("image_weights", _MODEL.image_weights,
                    "Weights of a pretrained backbone: imagenet, none, or a local weights file.")
flags.DEFINE_enum("freeze_backbone", "auto", ["auto", "true", "false"],
                  "Freeze the image backbone and train the heads from its cached feature maps "
                  "(computed on the first run); auto: true for pretrained weights.")
flags.DEFINE_list("cnn_filters", [str(f) for f in _MODEL.cnn_filters],
                  "small_cnn: filters per conv block.")
flags.DEFINE_bool("cnn_pool_last_block", _MODEL.cnn_pool_last_block,
                  "small_cnn: max-pool after the last conv block too (a map half as fine: 6x6 "
                  "instead of 12x12 at --image_size=48).")
flags.DEFINE_list("image_hidden_units", [str(u) for u in _MODEL.image_hidden_units],
                  "Image hash head: the two hidden layers (VGG fc6/fc7: 4096,4096).")
flags.DEFINE_list("text_units", [str(u) for u in _MODEL.text_units],
                  "Text encoder: the two dense layers.")
flags.DEFINE_boolean("text_linear_path", _MODEL.text_linear_path,
                     "Text encoder: add a linear map of the bag of words to the two dense layers' "
                     "features, f = MLP(x) + W x (not in the paper, whose encoder is "
                     "--notext_linear_path; measured on every dataset in the README).")
flags.DEFINE_float("dropout", _MODEL.dropout, "Dropout in the dense layers.",
                   lower_bound=0.0, upper_bound=0.9)
flags.DEFINE_enum("attention", _MODEL.attention, ATTENTION_CHOICES,
                  "adversarial: DAAH; none: codes from the whole features (ablation).")
flags.DEFINE_boolean("adversarial", _MODEL.adversarial,
                     "Train the attention adversarially (false: ablation, attention fixed).")
flags.DEFINE_float("margin", _MODEL.margin, "Margin eps of the triplet ranking loss.",
                   lower_bound=0.0)
flags.DEFINE_enum("margin_scaling", _MODEL.margin_scaling, MARGIN_SCALINGS,
                  "fixed: --margin at every code length (the paper's); sqrt_bits: --margin * "
                  "sqrt(bits / 16), so that long codes meet the margin as far from zero as "
                  "16-bit codes do (README \"Results\").")
flags.DEFINE_enum("attention_gradient", _MODEL.attention_gradient, ATTENTION_GRADIENTS,
                  "Attention player's gradient of L_adv: through the unattended codes only, "
                  "through the attended query codes too (both, the paper's), or through the "
                  "unattended codes and the attended text query codes (unattended_and_text; "
                  "see the README).")
flags.DEFINE_enum("loss", _MODEL.loss, LOSSES,
                  "daah: the paper's triplet losses; dcmh: the DCMH-style baseline "
                  "(needs --attention=none).")
flags.DEFINE_float("dcmh_quantization_weight", _MODEL.dcmh_quantization_weight,
                   "--loss=dcmh: weight of the quantization term (DCMH: 1).", lower_bound=0.0)
flags.DEFINE_float("dcmh_balance_weight", _MODEL.dcmh_balance_weight,
                   "--loss=dcmh: weight of the bit-balance term (DCMH: 1).", lower_bound=0.0)
flags.DEFINE_enum("similarity", _MODEL.similarity, SIMILARITY_KINDS,
                  "S(i,j) from labels: binary (share a label), count, cosine.")
flags.DEFINE_enum("update", _MODEL.update, UPDATE_MODES,
                  "alternating: the paper's schedule; simultaneous: one forward, both updates.")

flags.DEFINE_enum("image_head_pooling", _MODEL.image_head_pooling, IMAGE_HEAD_POOLINGS,
                  "How a feature map enters the image hash head: flattened (VGG fc6) or "
                  "averaged over positions.")
flags.DEFINE_enum("mask_estimator", _MODEL.mask_estimator, MASK_ESTIMATORS,
                  "Where the attention threshold's straight-through gradient sits: on the "
                  "margin log(nP) (logit) or on P (probability, the literal reading).")
flags.DEFINE_bool("standardize_attention_scores", _MODEL.standardize_attention_scores,
                  "Standardize each attention's scores (mean 0, standard deviation 1 over the "
                  "positions or dimensions) before the softmax, so that the mask's share "
                  "follows the shape of the scores, not their scale (paper: false).")
flags.DEFINE_enum("standardize_attention_modalities", _MODEL.standardize_attention_modalities,
                  STANDARDIZED_MODALITIES,
                  "With --standardize_attention_scores: whose attention scores are "
                  "standardized, both modalities' or one's (the other's stay as they are).")
flags.DEFINE_enum("attention_objective", _MODEL.attention_objective, ATTENTION_OBJECTIVES,
                  "What the attention player maximises: L_adv - L_ret (adversarial_retrieval) "
                  "or L_adv alone (adversarial, the paper's game).")
flags.DEFINE_float("adversarial_weight", _MODEL.adversarial_weight,
                   "The hashing player's weight on L_adv in F = L_ret + w * L_adv (paper: 1).",
                   lower_bound=0.0)
flags.DEFINE_enum("hash_adversarial_terms", _MODEL.hash_adversarial_terms, HASH_ADVERSARIAL_TERMS,
                  "Which terms of L_adv the hashing player minimises (w times): both, the "
                  "paper's; t2i, F_{T->I^} only (text queries against the unattended image "
                  "codes); i2t, F_{I->T^} only. The attention player always plays both.")
flags.DEFINE_float("quantization_weight", _MODEL.quantization_weight,
                   "The hashing player's weight on Q = mean (|H| - 1)^2 of the image and text "
                   "retrieval codes, which pulls them towards their binary codes sign(H); every "
                   "method has it, the ablations too (paper: no such term, 0).",
                   lower_bound=0.0)
flags.DEFINE_float("center_weight", _MODEL.center_weight,
                   "The hashing player's weight on C, the cross-entropy of the image and text "
                   "retrieval codes against a fixed binary code of their labels (hash centres: "
                   "Hadamard rows, or seeded random signs); every method has it, the ablations "
                   "too (paper: no such term, 0; --loss=dcmh needs 0).",
                   lower_bound=0.0)
flags.DEFINE_float("attention_area_weight", _MODEL.attention_area_weight,
                   "The attention player's cost beta on the attended share A of the image "
                   "feature map: it maximises its objective minus beta * A, so the eraser keeps "
                   "the positions that hide the evidence and drops those near them. Feature "
                   "maps only (a vector's dimensions pay nothing); the ablations have no "
                   "attention player (paper: no such cost, 0).", lower_bound=0.0)
flags.DEFINE_float("binary_ranking_share", _MODEL.binary_ranking_share,
                   "Share a of the ranking loss computed on the binary codes sign(H) with a "
                   "straight-through gradient: L_ret = (1 - a) L_ret(H) + a L_ret(sign(H)), so "
                   "that training ranks the codes that retrieval ranks; every method has it "
                   "(paper: 0, L_ret on H only).", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_enum("retrieval_view", _MODEL.retrieval_view, RETRIEVAL_VIEWS,
                  "Which features the retrieval codes read: the attended Z * f (the paper's) or "
                  "the whole f (the mask then only shapes the unattended view of L_adv), or "
                  "(1 + Z) * f (residual attention: attended features emphasised), or "
                  "Z * f + sigmoid(g) * (1 - Z) * f with g learned by the hashing player (gated).")
flags.DEFINE_enum("text_retrieval_view", _MODEL.text_retrieval_view, TEXT_RETRIEVAL_VIEWS,
                  "The text codes' view, if other than --retrieval_view's (same: as "
                  "--retrieval_view; e.g. whole: text codes read every text feature, the text "
                  "mask only shapes L_adv).")

# Training.
flags.DEFINE_string("model_dir", _TRAIN.model_dir,
                    "Run directory; default runs/<dataset>_<bits>bit. Rerun to resume.")
flags.DEFINE_integer("epochs", _TRAIN.epochs, "Training epochs.", lower_bound=1)
flags.DEFINE_float("hash_learning_rate", _TRAIN.hash_learning_rate,
                   "Adam learning rate of the hashing player (encoders, heads).", lower_bound=0.0)
flags.DEFINE_float("attention_learning_rate", _TRAIN.attention_learning_rate,
                   "Adam learning rate of the attention player.", lower_bound=0.0)
flags.DEFINE_enum("attention_schedule", _TRAIN.attention_schedule, ATTENTION_SCHEDULES,
                  "The attention player's learning rate over the epochs: constant (the paper's) "
                  "or cosine (from --attention_learning_rate down to 0 at --epochs).")
flags.DEFINE_integer("eval_every", _TRAIN.eval_every,
                     "Validation mAP every N epochs (model selection).", lower_bound=1)
flags.DEFINE_integer("keep_checkpoints", _TRAIN.keep_checkpoints,
                     "Latest checkpoints kept (the best is kept apart).", lower_bound=1)
flags.DEFINE_integer("early_stopping_patience", _TRAIN.early_stopping_patience,
                     "Stop after N evaluations without a better validation mAP (0: never).",
                     lower_bound=0)
flags.DEFINE_float("weight_average_decay", _TRAIN.weight_average_decay,
                   "Validate, select and export an exponential moving average of the weights "
                   "(Polyak averaging; decay in (0, 1), about 1/(1-decay) steps) instead of the "
                   "live ones; 0: off.")
flags.DEFINE_boolean("jit_compile", _TRAIN.jit_compile, "Compile the train step with XLA.")
flags.DEFINE_enum("mixed_precision", _TRAIN.mixed_precision, MIXED_PRECISIONS,
                  "Mixed precision policy (float16 scales both players' losses).")
flags.DEFINE_boolean("deterministic", _TRAIN.deterministic,
                     "Enable TensorFlow op determinism (slower; exact reruns).")
flags.DEFINE_integer("max_steps_per_epoch", _TRAIN.max_steps_per_epoch,
                     "Cap on steps per epoch (0: the whole training split).", lower_bound=0)
flags.DEFINE_enum("on_nonfinite", _TRAIN.on_nonfinite, NONFINITE_POLICIES,
                  "NaN/Inf in a loss or gradient: stop (naming the step and term, keeping the "
                  "last good checkpoint) or skip_batch (skip it and count).")
flags.DEFINE_enum("distribution", _TRAIN.distribution, STRATEGIES,
                  "none, mirrored (local GPUs), multi_worker (TF_CONFIG).")
flags.DEFINE_integer("logical_cpu_devices", _TRAIN.logical_cpu_devices,
                     "Split the CPU into N logical devices (to try --distribution=mirrored "
                     "without GPUs).", lower_bound=0, upper_bound=64)
flags.DEFINE_string("cache_dir", _TRAIN.cache_dir,
                    "Where frozen-backbone feature caches go; default DATA_DIR/.daah_cache if "
                    "writable, else the user cache folder.")
flags.DEFINE_integer("verbose", _TRAIN.verbose, "0: quiet, 1: progress bar, 2: a line an epoch.",
                     lower_bound=0, upper_bound=2)


def _positive_ints(name):
    def check(values):
        try:
            return all(int(v) > 0 for v in values) and len(values) > 0
        except ValueError:
            return False

    flags.register_validator(name, check, message=f"--{name} takes positive integers, e.g. 64,64")


for _name in ("cnn_filters", "image_hidden_units", "text_units"):
    _positive_ints(_name)
flags.register_validator("text_units", lambda v: len(v) == 2,
                         message="--text_units takes exactly two sizes, e.g. 512,256")
flags.register_validator("image_hidden_units", lambda v: len(v) == 2,
                         message="--image_hidden_units takes exactly two sizes, e.g. 4096,4096")
flags.register_multi_flags_validator(
    ["image_weights"],
    lambda values: values["image_weights"] in ("imagenet", "none")
    or os.path.isfile(values["image_weights"]),
    message="--image_weights: imagenet, none, or an existing file")


def _flag_name(setting):
    return f"--{setting}"


# Settings that must agree: the rules the config dataclasses check too (daah_tf/config.py),
# here with the flags' names, so that a contradiction stops before anything is written.
for _rule in RULES:
    flags.register_multi_flags_validator(list(_rule.settings), _rule.holds,
                                         message=_rule.explain(_flag_name))


def default_model_dir(dataset, bits):
    """runs/<dataset>_<bits>bit: the same command always finds (and resumes) the same run."""
    return os.path.join("runs", f"{dataset}_{bits}bit")


def _apply_folder_defaults():
    """`--dataset=folder`: TF-IDF weighted captions (fashion-9k, DAAH 0.865 / 0.914 against
    0.854 / 0.900 with counts; README); and without a backbone flag, the pretrained
    efficientnet_lite0 at 224 when the [pretrained] extra is installed, its 7x7x1280 map
    averaged into the image head (fashion-9k, 64 bits: mAP I->T 0.87 averaged against 0.56
    flattened). Written back into FLAGS, so that flags.txt (and a rerun from it) names what
    the run used."""
    if FLAGS.dataset == "folder" and not FLAGS["text_weighting"].present:
        FLAGS.text_weighting = "tf_idf"
    if (FLAGS.dataset != "folder" or FLAGS["image_backbone"].present
            or FLAGS.feature_cache):
        return
    # Here, not at the top: importing daah_tf.models loads TensorFlow, which parsing (and
    # --help) does without.
    from daah_tf.models.backbones import pretrained_default

    choice = pretrained_default()
    if choice is None:
        return
    FLAGS.image_backbone = choice.backbone
    if not FLAGS["image_weights"].present:
        FLAGS.image_weights = choice.weights
    if not FLAGS["image_size"].present:
        FLAGS.image_size = choice.image_size
    if not FLAGS["image_head_pooling"].present:
        FLAGS.image_head_pooling = "average"


def _freeze(value, backbone, weights):
    if value == "auto":
        return backbone in PRETRAINED_BACKBONES and weights != "none"
    return value == "true"


def config_from_flags():
    """The RunConfig the parsed flags describe."""
    _apply_folder_defaults()
    ints = lambda values: tuple(int(v) for v in values)  # noqa: E731
    data = DataConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, feature_cache=FLAGS.feature_cache,
        image_size=FLAGS.image_size, batch_size=FLAGS.batch_size,
        validation_fraction=FLAGS.validation_fraction, seed=FLAGS.seed,
        skip_bad_rows=FLAGS.skip_bad_rows, synthetic_pairs=FLAGS.synthetic_pairs,
        synthetic_classes=FLAGS.synthetic_classes, text_vocab_size=FLAGS.text_vocab_size,
        text_ngrams=FLAGS.text_ngrams, text_min_count=FLAGS.text_min_count,
        text_weighting=FLAGS.text_weighting,
        augment=FLAGS.augment,
    )
    model = ModelConfig(
        bits=FLAGS.bits, image_backbone=FLAGS.image_backbone, image_weights=FLAGS.image_weights,
        cnn_filters=ints(FLAGS.cnn_filters), cnn_pool_last_block=FLAGS.cnn_pool_last_block,
        image_hidden_units=ints(FLAGS.image_hidden_units),
        text_units=ints(FLAGS.text_units), text_linear_path=FLAGS.text_linear_path,
        dropout=FLAGS.dropout, attention=FLAGS.attention,
        adversarial=FLAGS.adversarial, attention_gradient=FLAGS.attention_gradient,
        margin=FLAGS.margin, margin_scaling=FLAGS.margin_scaling, loss=FLAGS.loss,
        dcmh_quantization_weight=FLAGS.dcmh_quantization_weight,
        dcmh_balance_weight=FLAGS.dcmh_balance_weight, similarity=FLAGS.similarity,
        update=FLAGS.update, mask_estimator=FLAGS.mask_estimator,
        image_head_pooling=FLAGS.image_head_pooling,
        attention_objective=FLAGS.attention_objective,
        retrieval_view=FLAGS.retrieval_view,
        text_retrieval_view=FLAGS.text_retrieval_view,
        adversarial_weight=FLAGS.adversarial_weight,
        hash_adversarial_terms=FLAGS.hash_adversarial_terms,
        quantization_weight=FLAGS.quantization_weight,
        binary_ranking_share=FLAGS.binary_ranking_share,
        center_weight=FLAGS.center_weight,
        standardize_attention_scores=FLAGS.standardize_attention_scores,
        standardize_attention_modalities=FLAGS.standardize_attention_modalities,
        attention_area_weight=FLAGS.attention_area_weight,
        freeze_backbone=_freeze(FLAGS.freeze_backbone, FLAGS.image_backbone,
                                FLAGS.image_weights),
    )
    train = TrainConfig(
        model_dir=FLAGS.model_dir or default_model_dir(FLAGS.dataset, FLAGS.bits),
        epochs=FLAGS.epochs, hash_learning_rate=FLAGS.hash_learning_rate,
        attention_learning_rate=FLAGS.attention_learning_rate,
        attention_schedule=FLAGS.attention_schedule, eval_every=FLAGS.eval_every,
        keep_checkpoints=FLAGS.keep_checkpoints,
        early_stopping_patience=FLAGS.early_stopping_patience,
        weight_average_decay=FLAGS.weight_average_decay, jit_compile=FLAGS.jit_compile,
        mixed_precision=FLAGS.mixed_precision, deterministic=FLAGS.deterministic,
        max_steps_per_epoch=FLAGS.max_steps_per_epoch, verbose=FLAGS.verbose,
        on_nonfinite=FLAGS.on_nonfinite, distribution=FLAGS.distribution,
        logical_cpu_devices=FLAGS.logical_cpu_devices, cache_dir=FLAGS.cache_dir,
    )
    return RunConfig(data=data, model=model, train=train)


def effective_flags_text():
    """This program's flags with their effective values, one `--name=value` a line: a flagfile
    that reruns (and so resumes) the same run."""
    own = FLAGS.get_flags_for_module(__name__)
    return "".join(flag.serialize() + "\n" for flag in sorted(own, key=lambda f: f.name))
