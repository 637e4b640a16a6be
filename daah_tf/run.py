"""A run directory: the names of its files, and `Run`, a finished run read back.

    DIR/flags.txt             FLAGS_FILE            effective flags, usable as --flagfile
    DIR/config.json           CONFIG_FILE           the RunConfig
    DIR/inputs.json           INPUTS_FILE           what the model takes (input kinds, shapes)
    DIR/splits.json           SPLITS_FILE           the split (query/database/train/validation)
    DIR/text_featurizer.json  TEXT_FEATURIZER_FILE  the text vocabulary (raw-text datasets)
    DIR/checkpoints/          CHECKPOINTS_DIR       latest checkpoints, and best/
                                                    (BEST_CHECKPOINT_DIR, model selection)
    DIR/tensorboard/          TENSORBOARD_DIR       train/, validation/ and eval/ event files
    DIR/saved_model/<v>/      SAVED_MODEL_DIR       the serving export (saved_model_layout.py)
    DIR/metrics.json          METRICS_FILE          the training run's final retrieval metrics
    DIR/eval/                 EVAL_DIR              python -m daah_tf.evaluate's report
    DIR/index/                INDEX_DIR             python -m daah_tf.search build's indexes
    DIR/train.log             TRAIN_LOG_FILE        tools/report.py: the train command's output
    DIR/linear_floor.json     LINEAR_FLOOR_FILE     tools/linear_floor.py's numbers

The trainer and daah_tf/training/run_directory.py write a run; everything that reads a finished
one (evaluate, search, serve, the tools) opens it with `Run.open`: its settings, its checkpoint
restored into the model, its data with its split, and splits encoded into codes.

No TensorFlow at import: opening a run, reading its settings and finding its checkpoint fail on
a typo in a second, before TensorFlow's start-up. The methods that restore the model, load the
data and encode import what they need when called.
"""

import dataclasses
import functools
import json
import os

import numpy as np
from absl import logging

from daah_tf.config import RunConfig
from daah_tf.data.splits import read_splits
from daah_tf.saved_model_layout import SAVED_MODEL_DIR, latest_saved_model  # noqa: F401

FLAGS_FILE = "flags.txt"
CONFIG_FILE = "config.json"
INPUTS_FILE = "inputs.json"
SPLITS_FILE = "splits.json"
TEXT_FEATURIZER_FILE = "text_featurizer.json"
CHECKPOINTS_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = "best"  # inside CHECKPOINTS_DIR
TENSORBOARD_DIR = "tensorboard"
METRICS_FILE = "metrics.json"
EVAL_DIR = "eval"
INDEX_DIR = "index"
TRAIN_LOG_FILE = "train.log"
LINEAR_FLOOR_FILE = "linear_floor.json"
CHECKPOINTS = ("best", "latest")  # which checkpoint a reader restores
# tf.train.CheckpointManager's list of the checkpoints of a folder.
_CHECKPOINT_STATE_FILE = "checkpoint"


class RunError(Exception):
    """A problem the user can fix (no run, no checkpoint, unknown split): printed, no
    traceback."""


def load_run_config(model_dir):
    """The RunConfig in DIR/config.json; FileNotFoundError if there is none."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{model_dir} is not a run directory: {path} is missing")
    with open(path, encoding="utf-8") as stream:
        return RunConfig.from_json(stream.read())


def inputs_description(data, image_shape, text_dim):
    """What the model takes, as written to DIR/inputs.json."""
    return {"image_kind": data.image_kind, "text_kind": data.text_kind,
            "image_shape": list(image_shape), "text_dim": int(text_dim)}


def split_rows(data, name):
    """(n,) int64 dataset rows of split `name`; RunError if unknown or empty."""
    if name not in data.splits:
        raise RunError(f"no split {name!r}; this run has {', '.join(sorted(data.splits))}")
    rows = np.asarray(data.splits[name], dtype=np.int64)
    if len(rows) == 0:
        raise RunError(f"split {name!r} is empty")
    return rows


class Run:
    """A run directory. `Run(DIR)` only names its paths (the trainer writes through them);
    `Run.open(DIR)` checks that DIR holds a run, to read it back:

        run = Run.open(model_dir)
        run.restore("best")                           # the model, with the checkpoint's weights
        data = run.load_data()                        # the dataset with the run's split
        (query_rows, query), (db_rows, database) = run.encode_splits(data, "query", "database")
    """

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.model = None  # set by `restore`
        self._code_encoder = None

    @classmethod
    def open(cls, model_dir):
        """The run in `model_dir`; RunError unless it holds one (before TensorFlow loads)."""
        if not os.path.isdir(model_dir):
            raise RunError(f"--model_dir={model_dir}: no such directory")
        if not os.path.exists(os.path.join(model_dir, CONFIG_FILE)):
            raise RunError(f"--model_dir={model_dir} is not a run directory (no {CONFIG_FILE}); "
                           "train one with python -m daah_tf.train --model_dir=DIR")
        return cls(model_dir)

    # ------------------------------------------------------------------------------------------
    # Paths

    def path(self, *parts):
        return os.path.join(self.model_dir, *parts)

    @property
    def flags_path(self):
        return self.path(FLAGS_FILE)

    @property
    def config_path(self):
        return self.path(CONFIG_FILE)

    @property
    def inputs_path(self):
        return self.path(INPUTS_FILE)

    @property
    def splits_path(self):
        return self.path(SPLITS_FILE)

    @property
    def text_featurizer_path(self):
        return self.path(TEXT_FEATURIZER_FILE)

    @property
    def checkpoints_dir(self):
        return self.path(CHECKPOINTS_DIR)

    @property
    def best_checkpoints_dir(self):
        return self.path(CHECKPOINTS_DIR, BEST_CHECKPOINT_DIR)

    @property
    def tensorboard_dir(self):
        return self.path(TENSORBOARD_DIR)

    @property
    def saved_model_base(self):
        """DIR/saved_model: the versions' parent (see daah_tf/saved_model_layout.py)."""
        return self.path(SAVED_MODEL_DIR)

    @property
    def metrics_path(self):
        return self.path(METRICS_FILE)

    @property
    def eval_dir(self):
        return self.path(EVAL_DIR)

    @property
    def index_dir(self):
        return self.path(INDEX_DIR)

    # ------------------------------------------------------------------------------------------
    # Settings and files

    @functools.cached_property
    def config(self):
        """The RunConfig the run was trained with."""
        return load_run_config(self.model_dir)

    @functools.cached_property
    def inputs(self):
        """DIR/inputs.json: {"image_kind", "text_kind", "image_shape", "text_dim"}."""
        with open(self.inputs_path, encoding="utf-8") as stream:
            return json.load(stream)

    @functools.cached_property
    def featurizer(self):
        """The run's TextFeaturizer, or None when its model takes text vectors."""
        if self.inputs["text_kind"] != "raw":
            return None
        from daah_tf.data.text_featurizer import TextFeaturizer  # TensorFlow: see the docstring

        return TextFeaturizer.load(self.model_dir)

    def config_with(self, dataset=None, data_dir=None):
        """The run's RunConfig, with --dataset / --data_dir overrides applied to its data part."""
        changes = {name: value for name, value in (("dataset", dataset), ("data_dir", data_dir))
                   if value is not None}
        if not changes:
            return self.config
        return dataclasses.replace(self.config,
                                   data=dataclasses.replace(self.config.data, **changes))

    def saved_model(self):
        """The newest complete SavedModel version; FileNotFoundError when there is none."""
        return latest_saved_model(self.model_dir)

    # ------------------------------------------------------------------------------------------
    # Checkpoints and the model

    def checkpoint_in_use(self, which="best"):
        """The checkpoint restore(which) restores: (path, note or None).

        "best" falls back to the latest checkpoint when the run had no validation split (as
        restore does); the note says so.
        """
        directory = self.checkpoints_dir
        if not os.path.exists(os.path.join(directory, _CHECKPOINT_STATE_FILE)):  # before TF
            raise RunError(self._no_checkpoint())
        if which == "best":
            best = _latest_checkpoint(self.best_checkpoints_dir)
            if best is not None:
                return best, None
        latest = _latest_checkpoint(directory)
        if latest is None:
            raise RunError(self._no_checkpoint())
        note = None if which == "latest" else "no best checkpoint (no validation): using the latest"
        return latest, note

    def _no_checkpoint(self):
        return (f"{self.model_dir} holds no checkpoint ({self.checkpoints_dir} is missing or "
                f"empty); train it first with python -m daah_tf.train --model_dir={self.model_dir}")

    @staticmethod
    def checkpoint_epoch(path):
        """Epochs completed when the checkpoint at `path` was written (0 if it does not say)."""
        import tensorflow as tf

        try:
            return int(tf.train.load_variable(path, "epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        except (tf.errors.OpError, ValueError):
            return 0

    def restore(self, checkpoint="best"):
        """The run's model with the weights of its best (or latest) checkpoint, kept as
        `self.model` for `encode`. A checkpoint that does not fit the model is a RunError."""
        import tensorflow as tf

        from daah_tf.training.restore import rebuild_model

        path, _ = self.checkpoint_in_use(checkpoint)
        try:
            self.model = rebuild_model(self.config, self.inputs, self.model_dir, checkpoint)
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            # E.g. a run trained by an older daah_tf whose checkpoints hold other objects.
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RunError(f"cannot restore {path} into the model of {self.model_dir}: "
                           f"{reason}") from None
        self._code_encoder = None
        return self.model

    # ------------------------------------------------------------------------------------------
    # Data and codes

    def load_data(self, dataset=None, data_dir=None):
        """The run's dataset (or --dataset / --data_dir's) with the run's split; RunError when
        the data is not what the model was trained on (inputs.json)."""
        from daah_tf.training.data_loading import load_data

        config = self.config_with(dataset, data_dir)
        data = self.with_splits(load_data(config), config.data.dataset)
        self.check_inputs(data)
        return data

    def with_splits(self, data, dataset=None):
        """`data` with the training run's split (DIR/splits.json), set in place.

        The split file's rows index the dataset the run was trained on, so it applies only when
        `dataset` (the setting `data` was loaded with; default: the run's) names that dataset;
        another dataset (--dataset) keeps its own protocol split.
        """
        trained = self.config.data.dataset
        dataset = dataset or trained
        path = self.splits_path
        if dataset != trained:
            logging.warning("--dataset=%s is not the run's dataset (%s): using its own split.",
                            dataset, trained)
        elif os.path.exists(path):
            splits = read_splits(path)
            top = max((int(rows.max()) for rows in splits.values() if len(rows)), default=-1)
            if top >= len(data):
                raise RunError(f"{path} names row {top}, but the dataset has {len(data)} rows: "
                               "is --data_dir the data the run was trained on?")
            data.splits = splits
        else:
            logging.warning("%s is missing: using the split the run's settings reproduce.", path)
        return data

    def check_inputs(self, data):
        """RunError if the data is not what the model was trained on (inputs.json)."""
        for modality in ("image", "text"):
            trained, given = self.inputs[f"{modality}_kind"], getattr(data, f"{modality}_kind")
            if trained != given:
                raise RunError(f"the model takes {modality} inputs of kind {trained!r}, but "
                               f"{data.name} gives {given!r}")

    def batches(self, data, rows, batch_size=None):
        """The evaluation pipeline of `rows`: in row order, unaugmented, texts featurized and
        images resized as in training; batches {"image": (B, ...), "text": (B, V)} float32."""
        from daah_tf.data.pipeline import make_pipeline

        return make_pipeline(data, rows, batch_size or self.config.data.batch_size,
                             training=False, text_featurizer=self.featurizer,
                             image_size=self.config.data.image_size, with_labels=False)

    def encode(self, data, rows):
        """Codes of `rows` through the restored model, in row order:
        {"image": (n, q) int8, "text": (n, q) int8}, +-1."""
        if self.model is None:
            raise RuntimeError("Run.encode needs the model: call restore() first")
        if self._code_encoder is None:
            from daah_tf.evaluation.encoding import CodeEncoder

            self._code_encoder = CodeEncoder(self.model)
        return self._code_encoder.encode_batches(self.batches(data, rows))

    def encode_splits(self, data, *names):
        """[(rows, codes)] of the named splits (every name checked before any is encoded):
        rows (n,) int64 dataset rows in split order, codes as `encode` returns them."""
        rows = [split_rows(data, name) for name in names]
        return [(split, self.encode(data, split)) for split in rows]


def _latest_checkpoint(directory):
    """The newest checkpoint path listed in directory/checkpoint, or None."""
    import tensorflow as tf

    try:
        return tf.train.latest_checkpoint(directory)
    except (ValueError, tf.errors.OpError) as error:
        raise RunError(f"{directory}/{_CHECKPOINT_STATE_FILE} is unreadable: {error}") from None


def restore_model(model_dir, checkpoint="best"):
    """The model of a run with the weights of its best (or latest) checkpoint.

    Returns:
        (model, text_featurizer or None, RunConfig, inputs description dict).
    """
    run = Run.open(model_dir)
    return run.restore(checkpoint), run.featurizer, run.config, run.inputs
