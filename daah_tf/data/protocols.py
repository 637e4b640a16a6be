"""Protocol sizes: a standard protocol's query and train sizes, scaled to a file's row count.

Small test files and subsets of a dataset keep the protocol's shape: with N pairs instead of
the standard number, the query and train sets shrink or grow in proportion.
"""

import numpy as np

from daah_tf.data.base import DatasetError
from daah_tf.data.splits import random_protocol_split


def scaled_sizes(num_pairs, standard_pairs, num_query, num_train):
    """Query and train sizes of a protocol, scaled to N pairs.

    With N == `standard_pairs` the standard sizes are used exactly; otherwise both shrink or
    grow in proportion to N (rounded, at least 1 each, their sum at most N), so small test files
    and subsets keep the protocol's shape.

    Raises:
        DatasetError when N < 2 (no room for a query and a training pair).
    """
    if num_pairs == standard_pairs:
        return num_query, num_train
    if num_pairs < 2:
        raise DatasetError(f"{num_pairs} pairs: need at least 2 for a query and a training set")
    query = max(1, round(num_pairs * num_query / standard_pairs))
    query = min(query, num_pairs - 1)
    train = max(1, round(num_pairs * num_train / standard_pairs))
    return query, min(train, num_pairs - query)


def scaled_protocol_split(num_pairs, standard_pairs, num_query, num_train, seed):
    """`random_protocol_split` with `scaled_sizes`: {"query", "database", "train"} -> indices."""
    query, train = scaled_sizes(num_pairs, standard_pairs, num_query, num_train)
    return random_protocol_split(num_pairs, query, train, seed)


def train_from_database(database, num_train, seed):
    """`num_train` of the `database` indices, drawn reproducibly from `seed`, sorted int64."""
    picks = random_protocol_split(len(database), 0, num_train, seed)["train"]
    return np.asarray(database, dtype=np.int64)[picks]
