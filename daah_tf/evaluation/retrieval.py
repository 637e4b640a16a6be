"""Retrieval numbers from binary codes and labels: mAP, P@K, PR curves, chance (NumPy only).

Codes are {"image": (n, q), "text": (n, q)} +-1 arrays of one split; a direction names which
modality queries and which is retrieved (`DIRECTIONS`).
"""

import math
from typing import NamedTuple

import numpy as np

from daah_tf import metrics


class Direction(NamedTuple):
    """A retrieval direction: the queries' modality, the retrieved items' modality, its label."""

    query: str
    database: str
    label: str


DIRECTIONS = {
    "i2t": Direction("image", "text", "I->T"),
    "t2i": Direction("text", "image", "T->I"),
    "i2i": Direction("image", "image", "I->I"),
    "t2t": Direction("text", "text", "T->T"),
}
CROSS_MODAL = ("i2t", "t2i")
TIE_RULES = ("index", "average")
RADIUS = 2  # precision within Hamming radius 2, the hashing literature's usual radius
CURVE_POINTS = 40  # K values of the precision@K curve (log-spaced, 1..N)


def retrieval_maps(query_codes, query_labels, database_codes, database_labels, top_k=None):
    """mAP (tie rule: database index) in the four directions: {"i2t", "t2i", "i2i", "t2t"}."""
    return {
        name: metrics.mean_average_precision(
            query_codes[direction.query], database_codes[direction.database], query_labels,
            database_labels, top_k=top_k,
        )
        for name, direction in DIRECTIONS.items()
    }


def chance_map(query_labels, database_labels):
    """The mAP of a random ranking: the mean fraction of relevant database items per query."""
    relevant = (np.asarray(query_labels) @ np.asarray(database_labels).T) > 0
    return float(relevant.mean())


def precision_k_grid(num_database, extra=()):
    """Sorted int64 K values for the precision@K curve: log-spaced over 1..N, plus `extra`."""
    grid = np.geomspace(1, num_database, CURVE_POINTS).round().astype(np.int64)
    return np.unique(np.concatenate([grid, np.asarray(extra, np.int64), [num_database]]))


def pr_curves(query_codes, query_labels, db_codes, db_labels, directions=tuple(DIRECTIONS)):
    """Precision and recall of retrieving everything within Hamming radius r, r = 0..q.

    Args:
        query_codes, db_codes: {"image", "text"} -> (Q, q) and (N, q) +-1 codes.
        query_labels, db_labels: (Q, L) and (N, L) multi-hot labels.
        directions: names of DIRECTIONS.

    Returns:
        {name: {"precision": [...], "recall": [...]}}: (q + 1,) lists of floats over radius
        0..q, mean over queries (precision over the queries that retrieve something at that
        radius), None where undefined.
    """
    curves = {}
    for name in directions:
        direction = DIRECTIONS[name]
        precision, recall = metrics.precision_recall_curve(
            query_codes[direction.query], db_codes[direction.database], query_labels, db_labels)
        curves[name] = {"precision": json_ready(precision.tolist()),
                        "recall": json_ready(recall.tolist())}
    return curves


def direction_metrics(query_codes, query_labels, db_codes, db_labels, top_k, precision_k, ks,
                      tie_rule):
    """The scalar numbers and the P@K curve of one direction.

    Args:
        query_codes, db_codes: (Q, q) and (N, q) +-1 codes.
        query_labels, db_labels: (Q, L) and (N, L) multi-hot labels.
        top_k: K of mAP@K; precision_k: K of P@K (<= N); ks: (m,) K values of the P@K curve.
        tie_rule: "index" or "average" (mAP only; P@K always ranks ties by database index).

    Returns:
        {"map_all", "map_at_k", "precision_at_k", "precision_radius_2": float (NaN where
         undefined), "precision_curve": (m,) float}.
    """
    args = (query_codes, db_codes, query_labels, db_labels)
    curve = metrics.precision_at_k(*args, ks)
    return {
        "map_all": metrics.mean_average_precision(*args, None, tie_rule),
        "map_at_k": metrics.mean_average_precision(*args, top_k, tie_rule),
        "precision_at_k": float(curve[np.searchsorted(ks, precision_k)]),
        "precision_radius_2": metrics.precision_within_radius(*args, RADIUS),
        "precision_curve": curve,
    }


def evaluate_codes(query_codes, query_labels, db_codes, db_labels, top_k=1000, precision_k=100,
                   tie_rule="index"):
    """The four directions' metrics from codes ({"image", "text"} -> (n, q)) and labels.

    Returns a JSON-ready dict (NaN as None): per-direction scalars under "directions" and flat
    "<dir>_map" keys (mAP@all, as in the training run's metrics.json), the PR curves, the P@K
    curve, the chance level and the K values used (clipped to the database size N).
    """
    num_database = len(db_labels)
    k_precision = min(precision_k, num_database)
    ks = precision_k_grid(num_database, [k_precision])
    per_direction = {
        name: direction_metrics(query_codes[direction.query], query_labels,
                                db_codes[direction.database], db_labels, top_k, k_precision, ks,
                                tie_rule)
        for name, direction in DIRECTIONS.items()
    }
    scalars = ("map_all", "map_at_k", "precision_at_k", "precision_radius_2")
    curves = pr_curves(query_codes, query_labels, db_codes, db_labels)
    results = {
        "tie_rule": tie_rule,
        "top_k": top_k,
        "top_k_effective": min(top_k, num_database),
        "precision_k": precision_k,
        "precision_k_effective": k_precision,
        "radius": RADIUS,
        "num_query": len(query_labels),
        "num_database": num_database,
        "chance_map": chance_map(query_labels, db_labels),
        "directions": {name: {key: values[key] for key in scalars}
                       for name, values in per_direction.items()},
        "pr_curve": {name: {"radius": list(range(len(curve["precision"]))), **curve}
                     for name, curve in curves.items()},
        "precision_at_k_curve": dict(k=ks.tolist(), **{
            name: values["precision_curve"].tolist() for name, values in per_direction.items()}),
    }
    results.update({f"{name}_map": values["map_all"] for name, values in per_direction.items()})
    return json_ready(results)


def json_ready(value):
    """A copy with NaN/inf floats as None and NumPy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
