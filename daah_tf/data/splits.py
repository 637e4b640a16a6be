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


def carve_validation(train_index, fraction, seed, groups=None):
    """Splits a validation set off the training pairs, for model selection.

    The query set is never used for model selection: validation comes out of training data.
    Pairs that share a picture (one photo with several captions) are one group and stay on one
    side: a validation picture that is also a training picture would be found by memory, and
    selection would reward memorising the training pictures.

    Args:
        train_index: (n,) int64 training indices.
        fraction: share of them held out, in [0, 1); 0 gives an empty validation set.
        seed: the draw's seed.
        groups: optional (N,) int64 group of every pair of the dataset (e.g. which picture it
            has); None, no group with two training pairs, or a single group draws single pairs
            as before. At least one group stays in training.

    Returns:
        (train_index, validation_index): disjoint sorted int64 arrays covering train_index.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    train_index = np.asarray(train_index, dtype=np.int64)
    count = int(round(len(train_index) * fraction))
    order = np.random.default_rng(seed + 1).permutation(len(train_index))
    chosen = order[:count]
    if groups is not None and count:
        train_groups = np.asarray(groups)[train_index]
        # Whole groups only when some group repeats and one can stay behind for training.
        if 2 <= len(np.unique(train_groups)) < len(train_groups):
            chosen = whole_groups(train_groups, order, count)
    held_out = np.zeros(len(train_index), bool)
    held_out[chosen] = True
    return (np.sort(train_index[~held_out]).astype(np.int64),
            np.sort(train_index[held_out]).astype(np.int64))


def whole_groups(groups, order, count):
    """Positions (into `groups`, (n,)) of whole groups, taken in the order their first pair
    has in `order` (a permutation of the n positions) until they hold at least `count` pairs,
    never all of the groups (the rest must keep one)."""
    rank = {}
    for position in order:
        rank.setdefault(groups[position], len(rank))
    group_rank = np.asarray([rank[g] for g in groups])
    by_group = np.argsort(group_rank, kind="stable")
    sizes = np.bincount(group_rank)
    groups_needed = min(len(sizes) - 1, int(np.searchsorted(np.cumsum(sizes), count)) + 1)
    return by_group[:int(sizes[:groups_needed].sum())]


def write_splits(splits, path):
    """Writes the index arrays as JSON lists (readable, no pickle), atomically."""
    atomic_write_text(path, json.dumps(
        {name: np.asarray(index).tolist() for name, index in splits.items()}))


def read_splits(path):
    """Reads what `write_splits` wrote: name -> int64 array."""
    with open(path) as handle:
        saved = json.load(handle)
    return {name: np.asarray(index, dtype=np.int64) for name, index in saved.items()}
