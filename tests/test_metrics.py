"""Tests for daah_tf.metrics against brute force, sklearn and hand-made cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _helpers import brute_hamming
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from daah_tf import metrics

# ---------------------------------------------------------------------------------------------
# Brute force references: one query at a time, written plainly.


def brute_relevance(query_labels, db_labels):
    out = np.zeros((len(query_labels), len(db_labels)), dtype=bool)
    for i, a in enumerate(query_labels):
        for j, b in enumerate(db_labels):
            out[i, j] = bool(np.any((np.asarray(a) != 0) & (np.asarray(b) != 0)))
    return out


def brute_ap_of_ranking(ranked_rel, k=None):
    """(1 / R_k) * sum over relevant r <= k of precision@r; 0 if nothing relevant in the top k."""
    ranked_rel = list(ranked_rel)[: len(ranked_rel) if k is None else k]
    hits, total = 0, 0.0
    for r, is_rel in enumerate(ranked_rel, start=1):
        if is_rel:
            hits += 1
            total += hits / r
    return total / hits if hits else 0.0


def brute_ap_index(dist_row, rel_row, k=None):
    order = sorted(range(len(dist_row)), key=lambda j: (dist_row[j], j))
    return brute_ap_of_ranking([rel_row[j] for j in order], k)


def brute_ap_tie_average(dist_row, rel_row, k=None):
    """Enumerate every order inside the tied groups: E[sum P@r] / E[R_k] (exact for k=None)."""
    groups = [[j for j in range(len(dist_row)) if dist_row[j] == d] for d in sorted(set(dist_row))]
    k = len(dist_row) if k is None else k
    sums, hits = 0.0, 0.0
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        ranked = [rel_row[j] for g in orders for j in g][:k]
        hits_here = sum(ranked)
        sums += brute_ap_of_ranking(ranked) * hits_here
        hits += hits_here
    return sums / hits if hits else 0.0


def random_case(rng, n_query, n_db, bits, n_labels, p_label=0.3):
    query_labels = rng.random((n_query, n_labels)) < p_label
    db_labels = rng.random((n_db, n_labels)) < p_label
    query_codes = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_query, bits))
    db_codes = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_db, bits))
    return query_codes, db_codes, query_labels, db_labels


# ---------------------------------------------------------------------------------------------
# Relevance (packing and distances: tests/test_hamming.py)


@pytest.mark.parametrize("n_labels", [1, 24, 64, 70, 200])
def test_relevance_matches_brute_force(n_labels):
    rng = np.random.default_rng(n_labels)
    _, _, ql, dl = random_case(rng, 6, 9, 4, n_labels, p_label=0.05)
    expected = brute_relevance(ql, dl)
    np.testing.assert_array_equal(metrics.relevance(ql, dl), expected)
    np.testing.assert_array_equal(metrics.relevance(ql.astype(float), dl.astype(int)), expected)


def test_relevance_without_labels_is_all_false():
    assert not metrics.relevance(np.zeros((2, 0)), np.zeros((3, 0))).any()


# ---------------------------------------------------------------------------------------------
# Average precision: hand-made cases with the answer written out


def ap(dist, rel, top_k=None, tie_rule="index"):
    return metrics.average_precision_from_distances(
        np.array([dist]), np.array([rel], dtype=bool), top_k, tie_rule
    )[0]


def test_ap_hand_made_index_rule():
    assert ap([0, 1, 2], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)  # R, N, R
    assert ap([0, 1, 2], [1, 0, 1], top_k=2) == pytest.approx(1.0)  # R_K = 1
    assert ap([0, 1, 2], [0, 0, 1], top_k=2) == 0.0  # nothing relevant in the top 2
    assert ap([2, 1, 0], [1, 0, 0]) == pytest.approx(1 / 3)  # ranking N, N, R
    assert ap([0, 0, 1], [0, 1, 1]) == pytest.approx((1 / 2 + 2 / 3) / 2)  # tie -> index order
    assert ap([5, 5], [0, 0]) == 0.0  # no relevant item at all


def test_ap_hand_made_tie_average():
    # Group {N, R} at distance 0, then R: orders R,N,R (AP 5/6) and N,R,R (AP 7/12) -> 17/24.
    assert ap([0, 0, 1], [0, 1, 1], tie_rule="average") == pytest.approx(17 / 24)
    assert ap([3, 3, 3, 3], [1, 0, 0, 0], tie_rule="average") == pytest.approx(
        (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4
    )
    # Top-2 cuts the group of three {R, N, N}: E[sum P@r] = (1 + 1/2) / 3, E[R_2] = 2/3.
    assert ap([1, 1, 1], [1, 0, 0], top_k=2, tie_rule="average") == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------
# Average precision against brute force


@pytest.mark.parametrize("bits", [4, 16])
@pytest.mark.parametrize("top_k", [None, 1, 5, 37, 500])
def test_map_index_rule_matches_brute_force(bits, top_k):
    rng = np.random.default_rng(bits * 1000 + (top_k or 0))
    q, d, ql, dl = random_case(rng, 13, 60, bits, 5)
    dist, rel = brute_hamming(q, d), brute_relevance(ql, dl)
    expected = [brute_ap_index(dist[i], rel[i], top_k) for i in range(len(q))]
    got = metrics.average_precision_per_query(q, d, ql, dl, top_k=top_k)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert metrics.mean_average_precision(q, d, ql, dl, top_k=top_k) == pytest.approx(
        np.mean(expected), abs=1e-12
    )


@pytest.mark.parametrize("top_k", [None, 1, 2, 3, 4, 6])
def test_tie_average_matches_enumeration(top_k):
    rng = np.random.default_rng(top_k or 0)
    for _ in range(20):
        dist = rng.integers(0, 3, size=6)
        rel = rng.random(6) < 0.5
        expected = brute_ap_tie_average(dist.tolist(), rel.tolist(), top_k)
        assert ap(dist, rel, top_k, "average") == pytest.approx(expected, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=7),
    st.one_of(st.none(), st.integers(1, 8)),
)
def test_tie_average_property(items, top_k):
    dist, rel = [d for d, _ in items], [r for _, r in items]
    expected = brute_ap_tie_average(dist, rel, top_k)
    assert ap(dist, rel, top_k, "average") == pytest.approx(expected, abs=1e-12)
    assert ap(dist, rel, top_k, "index") == pytest.approx(brute_ap_index(dist, rel, top_k))


def test_tie_average_large_groups_are_accurate():
    # Big tied groups far down the ranking stress the harmonic-number differences.
    rng = np.random.default_rng(0)
    dist = np.repeat(np.arange(4), [150_000, 3, 40_000, 7])
    rel = rng.random(dist.size) < 0.001
    rel[150_000:150_003] = True
    got = ap(dist, rel, tie_rule="average")
    expected, hits, seen, rel_seen = 0.0, int(rel.sum()), 0, 0
    for d in range(4):  # sum_o (r/n)(R_b + 1 + (o-1)(r-1)/(n-1)) / (t + o), term by term
        group = rel[dist == d]
        n, r = group.size, int(group.sum())
        pair = (r - 1) / (n - 1) if n > 1 else 0.0
        o = np.arange(1, n + 1)
        expected += math.fsum((r / n) * (rel_seen + 1 + (o - 1) * pair) / (seen + o))
        seen, rel_seen = seen + n, rel_seen + r
    assert got == pytest.approx(expected / hits, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Against sklearn.metrics.average_precision_score


def test_matches_sklearn_with_distinct_distances():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        dist = rng.permutation(n)
        rel = rng.random(n) < 0.4
        rel[rng.integers(n)] = True
        expected = average_precision_score(rel, -dist)
        assert ap(dist, rel) == pytest.approx(expected, abs=1e-12)
        assert ap(dist, rel, tie_rule="average") == pytest.approx(expected, abs=1e-12)


def test_matches_sklearn_when_only_irrelevant_items_tie():
    # sklearn groups tied scores into one threshold and gives each relevant item of a group the
    # precision at the group's end: (1/R) sum_g r_g (R_before + r_g) / (t_g + n_g). That equals
    # both of our rules exactly when every group holding a relevant item has one item.
    rng = np.random.default_rng(2)
    for _ in range(20):
        n_rel, n_irr = int(rng.integers(1, 6)), int(rng.integers(0, 30))
        rel_dist = rng.choice(np.arange(0, 40, 2), size=n_rel, replace=False)
        irr_dist = rng.integers(0, 20, size=n_irr) * 2 + 1
        dist = np.concatenate([rel_dist, irr_dist])
        rel = np.arange(dist.size) < n_rel
        perm = rng.permutation(dist.size)
        dist, rel = dist[perm], rel[perm]
        expected = average_precision_score(rel, -dist)
        assert ap(dist, rel) == pytest.approx(expected, abs=1e-12)
        assert ap(dist, rel, tie_rule="average") == pytest.approx(expected, abs=1e-12)


def test_sklearn_pessimistic_ties_differ_from_tie_aware():
    dist, rel = np.array([0, 0, 1]), np.array([False, True, True])
    sklearn_ap = average_precision_score(rel, -dist)
    assert sklearn_ap == pytest.approx((1 * (1 / 2) + 1 * (2 / 3)) / 2)  # group-end precision
    assert ap(dist, rel, tie_rule="average") == pytest.approx(17 / 24)
    assert sklearn_ap != pytest.approx(17 / 24)


# ---------------------------------------------------------------------------------------------
# Properties


def test_tie_average_invariant_under_database_permutation():
    rng = np.random.default_rng(3)
    q, d, ql, dl = random_case(rng, 10, 80, 6, 4)
    for top_k in (None, 10):
        base = metrics.average_precision_per_query(q, d, ql, dl, top_k, tie_rule="average")
        perm = rng.permutation(len(d))
        permuted = metrics.average_precision_per_query(
            q, d[perm], ql, dl[perm], top_k, tie_rule="average"
        )
        np.testing.assert_allclose(permuted, base, rtol=0, atol=1e-12)


def test_tie_rules_agree_without_ties():
    rng = np.random.default_rng(4)
    dist = np.argsort(rng.random((8, 50)), axis=1)
    rel = rng.random((8, 50)) < 0.3
    for top_k in (None, 7):
        np.testing.assert_allclose(
            metrics.average_precision_from_distances(dist, rel, top_k, "average"),
            metrics.average_precision_from_distances(dist, rel, top_k, "index"),
            atol=1e-12,
        )


@pytest.mark.parametrize("tie_rule", ["index", "average"])
def test_perfect_codes_give_map_one(tie_rule):
    rng = np.random.default_rng(5)
    class_codes = np.array([[1] * 8, [-1] * 8, [1, -1] * 4])
    query_class, db_class = rng.integers(0, 3, 12), rng.integers(0, 3, 50)
    ql, dl = np.eye(3)[query_class], np.eye(3)[db_class]
    q, d = class_codes[query_class], class_codes[db_class]
    assert metrics.mean_average_precision(q, d, ql, dl, tie_rule=tie_rule) == pytest.approx(1.0)
    assert metrics.mean_average_precision(q, d, ql, dl, 5, tie_rule) == pytest.approx(1.0)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.sampled_from([None, 1, 3, 10]))
def test_map_in_unit_interval(seed, bits, top_k):
    rng = np.random.default_rng(seed)
    q, d, ql, dl = random_case(rng, 4, 15, bits, 3)
    for tie_rule in ("index", "average"):
        aps = metrics.average_precision_per_query(q, d, ql, dl, top_k, tie_rule)
        assert np.all((aps >= 0) & (aps <= 1 + 1e-12))


def test_chunks_threads_and_packed_input_agree():
    rng = np.random.default_rng(6)
    q, d, ql, dl = random_case(rng, 31, 70, 24, 5)
    for tie_rule in ("index", "average"):
        base = metrics.average_precision_per_query(q, d, ql, dl, None, tie_rule, num_threads=1)
        for chunk, threads in ((1, 1), (7, 2), (31, 3), (None, None)):
            got = metrics.average_precision_per_query(
                q, d, ql, dl, None, tie_rule, chunk_size=chunk, num_threads=threads
            )
            np.testing.assert_allclose(got, base, rtol=0, atol=1e-12)  # BLAS sums may regroup
        packed = metrics.average_precision_per_query(
            metrics.pack_codes(q), metrics.pack_codes(d), ql, dl, None, tie_rule, packed=True
        )
        np.testing.assert_allclose(packed, base, rtol=0, atol=1e-12)


def test_average_precision_from_distances_matches_codes_path():
    rng = np.random.default_rng(7)
    q, d, ql, dl = random_case(rng, 9, 30, 300, 4)  # 300 bits: uint16 distances
    dist = metrics.hamming_distance(metrics.pack_codes(q), metrics.pack_codes(d))
    rel = metrics.relevance(ql, dl)
    for tie_rule in ("index", "average"):
        np.testing.assert_allclose(
            metrics.average_precision_from_distances(dist, rel, 12, tie_rule, chunk_size=4),
            metrics.average_precision_per_query(q, d, ql, dl, 12, tie_rule),
            atol=1e-12,
        )


# ---------------------------------------------------------------------------------------------
# Precision@K, PR curve, radius


def test_precision_at_k_matches_brute_force():
    rng = np.random.default_rng(8)
    q, d, ql, dl = random_case(rng, 11, 40, 6, 4)
    dist, rel = brute_hamming(q, d), brute_relevance(ql, dl)
    ks = [1, 2, 10, 40]
    expected = np.zeros(len(ks))
    for i in range(len(q)):
        order = sorted(range(len(d)), key=lambda j: (dist[i, j], j))
        expected += [sum(rel[i, j] for j in order[:k]) / k for k in ks]
    np.testing.assert_allclose(
        metrics.precision_at_k(q, d, ql, dl, ks), expected / len(q), atol=1e-12
    )
    with pytest.raises(ValueError, match="ks"):
        metrics.precision_at_k(q, d, ql, dl, [0, 3])
    with pytest.raises(ValueError, match="ks"):
        metrics.precision_at_k(q, d, ql, dl, [41])


def test_precision_recall_curve_and_radius_match_brute_force():
    rng = np.random.default_rng(9)
    q, d, ql, dl = random_case(rng, 15, 30, 8, 6, p_label=0.1)
    q[0] = 1
    d[d.sum(axis=1) >= 6] = -1  # query 0 retrieves nothing within small radii
    dist, rel = brute_hamming(q, d), brute_relevance(ql, dl)
    precision, recall = metrics.precision_recall_curve(q, d, ql, dl)
    assert precision.shape == recall.shape == (9,)
    for r in range(9):
        p_vals, r_vals = [], []
        for i in range(len(q)):
            within = dist[i] <= r
            if within.sum():
                p_vals.append(rel[i][within].sum() / within.sum())
            if rel[i].sum():
                r_vals.append(rel[i][within].sum() / rel[i].sum())
        assert precision[r] == pytest.approx(np.mean(p_vals) if p_vals else np.nan, nan_ok=True)
        assert recall[r] == pytest.approx(np.mean(r_vals))
        zero = np.mean(
            [rel[i][dist[i] <= r].sum() / max((dist[i] <= r).sum(), 1) for i in range(len(q))]
        )
        assert metrics.precision_within_radius(q, d, ql, dl, r) == pytest.approx(zero)
        excluded = metrics.precision_within_radius(q, d, ql, dl, r, empty="exclude")
        assert excluded == pytest.approx(precision[r], nan_ok=True)
    assert recall[-1] == pytest.approx(1.0)


def test_precision_recall_curve_packed_bits():
    rng = np.random.default_rng(10)
    q, d, ql, dl = random_case(rng, 5, 20, 12, 3)
    plain = metrics.precision_recall_curve(q, d, ql, dl)
    packed = metrics.precision_recall_curve(
        metrics.pack_codes(q), metrics.pack_codes(d), ql, dl, packed=True, bits=12
    )
    np.testing.assert_array_equal(plain[0], packed[0])
    np.testing.assert_array_equal(plain[1], packed[1])


# ---------------------------------------------------------------------------------------------
# Input errors


def test_input_errors_name_the_argument():
    rng = np.random.default_rng(11)
    q, d, ql, dl = random_case(rng, 3, 5, 8, 2)
    m = metrics.mean_average_precision
    with pytest.raises(ValueError, match="code width"):
        m(q, d[:, :4], ql, dl)
    with pytest.raises(ValueError, match="label counts"):
        m(q, d, ql, dl[:, :1])
    with pytest.raises(ValueError, match="db_labels has 4"):
        m(q, d, ql, dl[:4])
    with pytest.raises(ValueError, match="tie_rule"):
        m(q, d, ql, dl, tie_rule="random")
    with pytest.raises(ValueError, match="top_k"):
        m(q, d, ql, dl, top_k=0)
    with pytest.raises(ValueError, match="query_codes must be a 2-D"):
        m(q[0], d, ql, dl)
    with pytest.raises(ValueError, match="looks packed"):
        m(metrics.pack_codes(q), metrics.pack_codes(d) | 3, ql, dl)
    with pytest.raises(ValueError, match="db_codes is empty"):
        m(q, d[:0], ql, dl[:0])
    with pytest.raises(ValueError, match="same shape"):
        metrics.average_precision_from_distances(np.zeros((2, 3), int), np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="integers"):
        metrics.average_precision_from_distances(np.zeros((2, 3)), np.zeros((2, 3), bool))


# ---------------------------------------------------------------------------------------------
# The counting pass of the index rule against the dense reference it replaced


def dense_reference_ap(dist, rel, k):
    """The previous kernel, verbatim in effect: full stable ranking, cumsum over all k ranks."""
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    ranked = np.take_along_axis(rel, order, axis=1)
    hits = np.cumsum(ranked, axis=1)
    n_hits = hits[:, -1]
    sums = ((hits * ranked) / np.arange(1, k + 1)).sum(axis=1)
    return np.divide(sums, n_hits, out=np.zeros(len(sums)), where=n_hits > 0)


@pytest.mark.parametrize("bits", [2, 8, 64, 300])
@pytest.mark.parametrize("top_k", [None, 1, 17, 999])
def test_counting_pass_equals_dense_reference_with_ties(bits, top_k):
    rng = np.random.default_rng(bits + (top_k or 0))
    q, d, ql, dl = random_case(rng, 23, 700, bits, 4)
    dist, rel = brute_hamming(q, d), brute_relevance(ql, dl)
    k = min(top_k or 700, 700)
    want = dense_reference_ap(dist, rel, k)
    for threads, chunk in ((1, None), (3, 2), (2, 7)):
        got = metrics.average_precision_per_query(q, d, ql, dl, top_k=top_k, chunk_size=chunk,
                                                  num_threads=threads)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    got_dist = metrics.average_precision_from_distances(dist, rel, top_k)
    np.testing.assert_allclose(got_dist, want, rtol=1e-13, atol=1e-15)


def test_counting_pass_edge_rows():
    dist = np.array([[0, 0, 0], [1, 0, 2], [2, 2, 2]])
    rel = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=bool)
    got = metrics.average_precision_from_distances(dist, rel)
    np.testing.assert_allclose(got, [0.0, 1.0, 1 / 3], atol=1e-15)
    # a database of one item, and relevant items only beyond the cut-off
    assert metrics.average_precision_from_distances([[3]], [[True]])[0] == 1.0
    assert metrics.average_precision_from_distances([[0, 1]], [[False, True]], top_k=1)[0] == 0


def test_million_item_database_in_bounded_memory():
    import tracemalloc

    rng = np.random.default_rng(3)
    n = 1_000_000
    db = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
    query = rng.integers(0, 256, size=(4, 8), dtype=np.uint8)
    db_labels = rng.random((n, 10)) < 0.1
    query_labels = rng.random((4, 10)) < 0.3
    tracemalloc.start()
    got = metrics.average_precision_per_query(query, db, query_labels, db_labels, packed=True,
                                              num_threads=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dist = metrics.hamming_distance(query, db)
    rel = metrics.relevance(query_labels, db_labels)
    np.testing.assert_allclose(got, dense_reference_ap(dist, rel, n), rtol=1e-12)
    assert peak < 200e6, peak  # inputs 30 MB + words + per-thread rows, not Q x N
