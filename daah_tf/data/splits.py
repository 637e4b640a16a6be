"""Reproducible protocol splits: query / database / train-from-database, and validation."""

import json

import numpy as np

from daah_tf.atomic import atomic_write_text


def random_protocol_split(num_pairs, num_query, num_train, seed, num_database=None):
    """The standard random protocol: query, database = the rest (or `num_database` of it),
    train drawn from the database.

    Args:
        num_pairs: N.
        num_query: size of the query set.
        num_train: size of the training set, drawn from the database.
        seed: the permutation's seed; the same seed gives the same split on any machine.
        num_database: size of the database; default: every pair not in the query set.

    Returns:
        {"query", "database", "train"} -> sorted int64 index arrays.
    """
    if num_query + num_train > num_pairs and num_database is None:
        raise ValueError(
            f"split sizes query={num_query}, train={num_train} exceed {num_pairs} pairs"
        )
    order = np.random.default_rng(seed).permutation(num_pairs)
    query = order[:num_query]
    database = order[num_query:] if num_database is None else order[
        num_query:num_query + num_database]
    if num_train > len(database):
        raise ValueError(f"train={num_train} is larger than the database ({len(database)})")
    train = database[:num_train]
    return {name: np.sort(part).astype(np.int64) for name, part in
            (("query", query), ("database", database), ("train", train))}


def carve_validation(train_index, fraction, seed):
    """Splits a validation set off the training pairs, for model selection.

    The query set is never used for model selection: validation comes out of training data.

    Args:
        train_index: (n,) int64 training indices.
        fraction: share of them held out, in [0, 1); 0 gives an empty validation set.
        seed: the draw's seed.

    Returns:
        (train_index, validation_index): disjoint sorted int64 arrays covering train_index.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    count = int(round(len(train_index) * fraction))
    order = np.random.default_rng(seed + 1).permutation(len(train_index))
    validation = np.sort(np.asarray(train_index)[order[:count]])
    train = np.sort(np.asarray(train_index)[order[count:]])
    return train.astype(np.int64), validation.astype(np.int64)


def write_splits(splits, path):
    """Writes the index arrays as JSON lists (readable, no pickle), atomically."""
    atomic_write_text(path, json.dumps(
        {name: np.asarray(index).tolist() for name, index in splits.items()}))


def read_splits(path):
    """Reads what `write_splits` wrote: name -> int64 array."""
    with open(path) as handle:
        saved = json.load(handle)
    return {name: np.asarray(index, dtype=np.int64) for name, index in saved.items()}
