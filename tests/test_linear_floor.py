"""tools/linear_floor.py: ridge to labels, random projection, sign."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))

from linear_floor import floor_codes  # noqa: E402

from daah_tf import metrics  # noqa: E402


def test_linearly_predictable_labels_give_perfect_retrieval():
    rng = np.random.default_rng(0)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=200)]
    # Features: the labels through a random linear map, plus small noise.
    features = labels @ rng.normal(size=(4, 30)) + 0.01 * rng.normal(size=(200, 30))
    projection = rng.normal(size=(4, 16))
    query, database = floor_codes(features[:150], labels[:150], (features[150:], features),
                                  projection, alpha=1.0)
    assert query.dtype == np.int8 and set(np.unique(query)) <= {-1, 1}
    assert metrics.mean_average_precision(query, database, labels[150:], labels) > 0.99


def test_unpredictable_features_stay_near_chance():
    rng = np.random.default_rng(1)
    labels = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=400)]
    features = rng.normal(size=(400, 30))
    projection = rng.normal(size=(4, 16))
    query, database = floor_codes(features[:300], labels[:300], (features[300:], features[:300]),
                                  projection, alpha=1.0)
    assert metrics.mean_average_precision(query, database, labels[300:], labels[:300]) < 0.4
