"""train_and_evaluate: the whole run, from a RunConfig to metrics.json and a SavedModel."""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from daah_tf import export
from daah_tf.config import RunConfig
from daah_tf.data.base import PairedDataset
from daah_tf.data.pipeline import make_pipeline
from daah_tf.data.splits import write_splits
from daah_tf.data.text_featurizer import TextFeaturizer
from daah_tf.evaluation.diagnostics import collapse_stats, mask_iou
from daah_tf.evaluation.encoding import CodeEncoder
from daah_tf.evaluation.retrieval import chance_map, retrieval_maps
from daah_tf.models.backbones import frozen_backbone
from daah_tf.run import Run, inputs_description
from daah_tf.training import distribution, run_directory
from daah_tf.training.attention_schedule import AttentionLearningRate
from daah_tf.training.checkpoints import RunCheckpoints
from daah_tf.training.compiled_model import (
    build_compiled_model,
    set_precision_policy,
    training_model_config,
)
from daah_tf.training.data_loading import load_data, warn_if_small_validation
from daah_tf.training.monitor import NonFiniteGuard, TrainingMonitor
from daah_tf.training.weight_average import WeightAverage


def configure_runtime(config: RunConfig):
    """Seeds every generator, and sets devices, determinism and the precision policy."""
    distribution.split_cpu(config.train.logical_cpu_devices)
    keras.utils.set_random_seed(config.data.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    set_precision_policy(config)


def check_backbone_fits(data: PairedDataset, config: RunConfig):
    """Images given as features need the precomputed backbone, and pictures need a CNN."""
    backbone = training_model_config(config).image_backbone
    if data.image_kind == "features" and backbone != "precomputed":
        raise ValueError(
            f"{data.name} gives image features of shape {data.image_shape}, not pictures: "
            "use --image_backbone=precomputed"
        )
    if data.image_kind != "features" and backbone == "precomputed":
        raise ValueError(
            f"{data.name} gives pictures; --image_backbone=precomputed needs feature vectors "
            "or a --feature_cache"
        )


def text_featurizer_for(data: PairedDataset, config: RunConfig, resuming):
    """The text featurizer: fitted on the training split only, or read back when resuming.
    Writes nothing (the run directory is checked first; train_and_evaluate saves it)."""
    if data.text_kind != "raw":
        return None
    model_dir = config.train.model_dir
    if resuming and os.path.exists(Run(model_dir).text_featurizer_path):
        return TextFeaturizer.load(model_dir)
    featurizer = TextFeaturizer.fit(
        data.texts[data.splits["train"]], vocab_size=config.data.text_vocab_size,
        max_ngram=config.data.text_ngrams, min_count=config.data.text_min_count,
        output_mode=config.data.text_weighting,
    )
    return featurizer


def input_shapes(data: PairedDataset, config: RunConfig, featurizer):
    """(image shape without batch, text dimension V) as the model sees them."""
    if data.image_kind in ("pixels", "paths"):
        image_shape = (config.data.image_size, config.data.image_size, 3)
    else:
        image_shape = data.image_shape
    text_dim = featurizer.dim if featurizer is not None else data.texts.shape[1]
    return image_shape, text_dim


class _Feeder:
    """Pipelines of one run's dataset with the run's settings."""

    def __init__(self, data, config, featurizer):
        self.data, self.config, self.featurizer = data, config, featurizer

    def pipeline(self, split, training, **kwargs):
        return make_pipeline(
            self.data, self.data.splits[split], self.config.data.batch_size, training=training,
            seed=self.config.data.seed, text_featurizer=self.featurizer,
            image_size=self.config.data.image_size, augment=self.config.data.augment, **kwargs,
        )

    def codes(self, encoder, split):
        return encoder.encode_split(self.data, self.data.splits[split], self.config.data.batch_size,
                                    self.featurizer, self.config.data.image_size)

    def labels(self, split):
        return self.data.labels[self.data.splits[split]]


def steps_per_epoch(num_train, config: RunConfig):
    steps = num_train // config.data.batch_size
    if steps == 0:
        raise ValueError(
            f"the training split has {num_train} pairs, fewer than --batch_size="
            f"{config.data.batch_size}"
        )
    if config.train.max_steps_per_epoch:
        steps = min(steps, config.train.max_steps_per_epoch)
    return steps


def _fit(model, feeder, checkpoints, config, start_epoch, print_fn):
    """Trains epochs start_epoch..epochs-1 with evaluation, selection and checkpoints."""
    train_config = config.train
    steps = steps_per_epoch(len(feeder.data.splits["train"]), config)
    training = feeder.pipeline("train", True, first_epoch=start_epoch,
                               last_epoch=train_config.epochs, max_batches_per_epoch=steps)
    has_validation = len(feeder.data.splits["validation"]) > 0
    encoder = CodeEncoder(model)

    def validate():
        if not has_validation:
            return None
        # Validation pairs query the training pairs: the query set is never looked at here.
        return retrieval_maps(feeder.codes(encoder, "validation"), feeder.labels("validation"),
                              feeder.codes(encoder, "train"), feeder.labels("train"))

    mask_batch = None
    if has_validation and feeder.data.image_kind != "features":  # overlays need pictures
        mask_batch = next(iter(feeder.pipeline("validation", False, with_labels=False)))
    log_dir = Run(train_config.model_dir).tensorboard_dir
    monitor = TrainingMonitor(checkpoints, validate, train_config.epochs, train_config.eval_every,
                              train_config.early_stopping_patience, log_dir, mask_batch, print_fn,
                              weight_average=checkpoints.weight_average)
    guard = NonFiniteGuard(config.train.on_nonfinite, steps, checkpoints.nonfinite_batches,
                           print_fn)
    schedule = AttentionLearningRate(train_config.attention_schedule,
                                     train_config.attention_learning_rate, train_config.epochs)
    callbacks = [schedule, guard, keras.callbacks.TensorBoard(log_dir=log_dir), monitor]
    model.fit(
        training, epochs=train_config.epochs, initial_epoch=start_epoch, steps_per_epoch=steps,
        validation_data=feeder.pipeline("validation", False) if has_validation else None,
        callbacks=callbacks, verbose=train_config.verbose, shuffle=False,  # order: pipeline's
    )


def final_metrics(model, feeder, config, checkpoints):
    """Query-vs-database retrieval with the selected model: the numbers that get reported."""
    data = feeder.data
    encoder = CodeEncoder(model)
    query, database = feeder.codes(encoder, "query"), feeder.codes(encoder, "database")
    maps = retrieval_maps(query, feeder.labels("query"), database, feeder.labels("database"))
    results = {f"{name}_map": value for name, value in maps.items()}
    results.update(
        chance_map=chance_map(feeder.labels("query"), feeder.labels("database")),
        bits=config.model.bits,
        dataset=data.name,
        best_epoch=int(checkpoints.best_epoch.numpy()) or int(checkpoints.epoch.numpy()),
        num_query=len(data.splits["query"]),
        num_database=len(data.splits["database"]),
        selected_on="validation" if len(data.splits["validation"]) else "last_epoch",
        weight_average_decay=config.train.weight_average_decay,
    )
    # Collapse: bits constant over the database, or fewer distinct codes than labels.
    results.update(collapse_stats(database, feeder.labels("database")))
    if model.image_attention is not None:
        results.update(_selected_masks(model, feeder, config))
    return results


def _selected_masks(model, feeder, config):
    """What the selected model's attention holds on the query set: "attended_share_image" and
    "attended_share_text" (the mean share of positions / dimensions in each mask: the method
    issue's 10-90% check, on the model users get rather than the last epoch's batches), and
    with object boxes `mask_iou`'s numbers."""
    image_masks, shares = [], {"image": [], "text": []}
    for batch in feeder.pipeline("query", False, with_labels=False):
        image_mask = model.image_mask(batch["image"]).numpy()
        text_mask = model.text_mask(batch["text"]).numpy()
        image_masks.append(image_mask)
        shares["image"].append(image_mask.reshape(len(image_mask), -1).mean(axis=1))
        shares["text"].append(text_mask.mean(axis=1))
    results = {f"attended_share_{side}": float(np.concatenate(values).mean())
               for side, values in shares.items()}
    boxes = feeder.data.extras.get("object_boxes")
    masks = np.concatenate(image_masks)
    if boxes is not None and masks.ndim == 3:
        results.update(mask_iou(masks, boxes[feeder.data.splits["query"]],
                                config.data.image_size, seed=config.data.seed))
    return results


def summary_lines(results):
    lines = [
        f"Retrieval on {results['dataset']} ({results['bits']} bits, query "
        f"{results['num_query']} vs database {results['num_database']}, best epoch "
        f"{results['best_epoch']}):",
        f"  mAP  I->T {results['i2t_map']:.4f}   T->I {results['t2i_map']:.4f}   "
        f"I->I {results['i2i_map']:.4f}   T->T {results['t2t_map']:.4f}   "
        f"(chance {results['chance_map']:.4f})",
    ]
    if "bit_balance_image" in results:
        lines.append(f"  database codes: bit balance image {results['bit_balance_image']:.3f} "
                     f"text {results['bit_balance_text']:.3f} (1 = constant bits); distinct "
                     f"image {results['distinct_codes_image']} text "
                     f"{results['distinct_codes_text']} ({results['num_labels']} labels)")
    if "attended_share_image" in results:
        lines.append(f"  attended share (query set): image {results['attended_share_image']:.0%} "
                     f"text {results['attended_share_text']:.0%}")
    if "mask_iou" in results:
        lines.append(f"  image attention mask vs object boxes: IoU {results['mask_iou']:.3f} "
                     f"(random mask of the same size {results['random_mask_iou']:.3f}; the "
                     f"mask of every cell an object touches {results['touched_cells_iou']:.3f}, "
                     f"the best mask of these cells {results['best_cells_iou']:.3f})")
        lines.append(f"  mask cells on an object {results['mask_cell_precision']:.0%}, object "
                     f"cells in the mask {results['object_cell_recall']:.0%}")
    return lines


def train_and_evaluate(config: RunConfig, flags_text, print_fn=print):
    """Runs (or resumes) training, selects the best checkpoint on validation, evaluates it on
    query vs database, and writes metrics.json and saved_model/ into the run directory.

    Returns the metrics dict.
    """
    started = time.time()
    configure_runtime(config)
    strategy = distribution.make_strategy(config.train.distribution)
    chief = distribution.is_chief(strategy)
    data = load_data(config)  # bad data stops the run before anything is written
    warn_if_small_validation(data, config.data.validation_fraction)
    check_backbone_fits(data, config)
    run_dir = config.train.model_dir  # the chief's; this worker's own is model_dir
    model_dir = distribution.worker_dir(run_dir, strategy)
    if model_dir != config.train.model_dir:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, model_dir=model_dir))
    featurizer = text_featurizer_for(data, config, run_directory.holds_run(model_dir))
    image_shape, text_dim = input_shapes(data, config, featurizer)
    # Computing a feature cache builds the backbone, which draws from the global generators:
    # seed them again, so that the model starts from the same weights whether the cache was
    # there already or not (a rerun finds it).
    keras.utils.set_random_seed(config.data.seed)
    with strategy.scope():  # variables of the model and of both optimizers are mirrored
        model = build_compiled_model(config, image_shape, text_dim)
    # The model's size tells how much disk the run needs: checked before anything is written.
    resuming = run_directory.prepare(config, flags_text, run_directory.bytes_needed(model))
    run = Run(model_dir)
    if resuming and os.path.exists(run.splits_path):
        # A resumed run keeps the split it started with, even where the split rules changed
        # since (whole photos held out for validation): its weights were trained on that one.
        data = run.with_splits(data)
    write_splits(data.splits, run.splits_path)
    if featurizer is not None:
        featurizer.save(model_dir)
    run_directory.atomic_write_json(run.inputs_path,
                                    inputs_description(data, image_shape, text_dim))
    with strategy.scope():
        decay = config.train.weight_average_decay
        average = WeightAverage(model.trainable_variables, decay) if decay else None
        checkpoints = RunCheckpoints(model, model_dir, config.train.keep_checkpoints, average)
    distribution.skip_keras_symbolic_build(model)
    start_epoch = 0
    if resuming:
        # Every worker resumes from the chief's checkpoint where it can read it (one host or a
        # shared disk), else from its own copy: all must start from the same epoch.
        shared = not chief and os.path.isdir(Run(run_dir).checkpoints_dir)
        path = checkpoints.restore_latest(run_dir if shared else None)
        if path is not None:
            start_epoch = int(checkpoints.epoch.numpy())
            print_fn(f"Resuming {model_dir} from {path}: epoch {start_epoch}, "
                     f"step {int(model.hash_optimizer.iterations.numpy())}.")
    feeder = _Feeder(data, config, featurizer)
    patience = config.train.early_stopping_patience
    stopped = patience and int(checkpoints.evaluations_without_gain.numpy()) >= patience
    if start_epoch < config.train.epochs and not stopped:
        try:
            _fit(model, feeder, checkpoints, config, start_epoch, print_fn)
        except distribution.PEER_ERRORS as error:
            if config.train.distribution != "multi_worker":
                raise
            raise distribution.worker_lost(error, run_dir) from None
    else:
        print_fn(f"{model_dir}: training already finished at epoch {start_epoch}; "
                 "evaluating the selected checkpoint.")
    trained = {"epochs_trained": int(checkpoints.epoch.numpy()),
               "steps": int(model.hash_optimizer.iterations.numpy()),
               "nonfinite_batches_skipped": int(checkpoints.nonfinite_batches.numpy())}
    if checkpoints.restore_best() is None:
        logging.info("No validation split: keeping the last epoch's weights.")
        if average is not None:
            average.swap()  # the last epoch's averaged weights, as a best checkpoint holds
    results = final_metrics(model, feeder, config, checkpoints)
    results.update(trained)  # of the whole run, not of the selected checkpoint
    if not chief:
        return results
    results["seconds"] = round(time.time() - started, 1)
    run_directory.atomic_write_json(run.metrics_path, results)
    backbone = None
    if "feature_cache_dir" in data.extras:  # serving takes pictures: the backbone goes in front
        backbone = frozen_backbone(config.model, config.data.image_size)
    export.export_saved_model(model, run.saved_model_base, data.image_kind,
                              image_shape, text_dim, featurizer, backbone=backbone)
    for line in summary_lines(results):
        print_fn(line)
    return results
