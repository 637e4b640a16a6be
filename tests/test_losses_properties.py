"""Property-based checks of the DAAH losses (hypothesis): properties that hold for any batch."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daah_tf import losses

# database=None: no .hypothesis/ folder in the working tree.
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None, database=None)
KINDS = st.sampled_from(losses.SIMILARITY_KINDS)
# No subnormal margins: TensorFlow flushes them to zero on CPU.
MARGINS = st.floats(0.0, 2.0, allow_nan=False, allow_subnormal=False, width=32)

# Traced once per similarity kind, for any shape: eager dispatch of the ~100 small ops of one
# example would dominate the run time. test_losses.py covers the eager path.
_MATRIX = tf.TensorSpec([None, None], tf.float32)
_SCALAR = tf.TensorSpec([], tf.float32)


@tf.function(input_signature=[_MATRIX, _MATRIX, _MATRIX, _SCALAR])
def _triplet(query, database, similarity, margin):
    return losses.triplet_ranking_loss(query, database, similarity, margin)


@functools.cache
def _traced(kind):
    @tf.function(input_signature=[_MATRIX] * 3 + [_SCALAR])
    def retrieval(image, text, labels, margin):
        return losses.retrieval_loss(image, text, labels, margin, kind)

    @tf.function(input_signature=[_MATRIX] * 5 + [_SCALAR])
    def adversarial(image, text, image_hat, text_hat, labels, margin):
        return losses.adversarial_loss(image, text, image_hat, text_hat, labels, margin, kind)

    @tf.function(input_signature=[_MATRIX] * 5)
    def gradients(image, text, image_hat, text_hat, labels):
        codes = [image, text, image_hat, text_hat]
        with tf.GradientTape() as tape:
            tape.watch(codes)
            total = losses.retrieval_loss(image, text, labels, 1.0, kind)["total"]
            total += losses.adversarial_loss(*codes, labels, 1.0, kind)["total"]
        return total, tape.gradient(total, codes)

    return retrieval, adversarial, gradients


def retrieval_loss(image, text, labels, margin, kind):
    return _traced(kind)[0](image, text, labels, np.float32(margin))


def adversarial_loss(image, text, image_hat, text_hat, labels, margin, kind):
    return _traced(kind)[1](image, text, image_hat, text_hat, labels, np.float32(margin))


def _codes(draw, rows, bits):
    return draw(
        hnp.arrays(
            np.float32,
            (rows, bits),
            elements=st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False, width=32),
        )
    )


@st.composite
def cross_modal_batches(draw, min_batch=2, max_batch=6):
    """(image, text, image_hat, text_hat, labels): codes in [-1, 1], multi-hot labels."""
    batch = draw(st.integers(min_batch, max_batch))
    bits = draw(st.integers(1, 6))
    num_labels = draw(st.integers(1, 4))
    labels = draw(hnp.arrays(np.float32, (batch, num_labels), elements=st.sampled_from([0.0, 1.0])))
    image, text, image_hat, text_hat = (_codes(draw, batch, bits) for _ in range(4))
    return image, text, image_hat, text_hat, labels


@st.composite
def triplet_problems(draw):
    """(query (Na, q), database (Nb, q), graded similarity (Na, Nb))."""
    na = draw(st.integers(1, 5))
    nb = draw(st.integers(1, 6))
    bits = draw(st.integers(1, 5))
    # Quarters: exact in float32, with ties, so that both ordered and tied pairs occur.
    similarity = draw(
        hnp.arrays(np.float32, (na, nb), elements=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
    )
    return _codes(draw, na, bits), _codes(draw, nb, bits), similarity


def _loss(query, database, similarity, margin):
    return float(_triplet(query, database, similarity, np.float32(margin)))


def _max_distance(query, database):
    a = query.astype(np.float64)
    b = database.astype(np.float64)
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).max())


@PROPERTY_SETTINGS
@given(problem=triplet_problems(), margin=MARGINS)
def test_triplet_loss_is_non_negative_and_bounded(problem, margin):
    query, database, similarity = problem
    value = _loss(query, database, similarity, margin)
    assert np.isfinite(value)
    assert value >= 0.0
    # Each hinge is at most eps + ||a_i - b_j||, so the mean is too.
    assert value <= margin + _max_distance(query, database) + 1e-5


@PROPERTY_SETTINGS
@given(batch=cross_modal_batches(), kind=KINDS, margin=MARGINS)
def test_retrieval_and_adversarial_terms_are_non_negative(batch, kind, margin):
    image, text, image_hat, text_hat, labels = batch
    retrieval = retrieval_loss(image, text, labels, margin, kind)
    adversarial = adversarial_loss(image, text, image_hat, text_hat, labels, margin, kind)
    for terms in (retrieval, adversarial):
        for name, value in terms.items():
            assert np.isfinite(float(value)), name
            assert float(value) >= 0.0, name


@PROPERTY_SETTINGS
@given(
    classes=st.lists(st.integers(0, 3), min_size=2, max_size=7),
    extra_bits=st.integers(0, 2),
    noise_seed=st.integers(0, 2**16),
    margin=st.floats(0.0, 0.5, width=32),
    kind=KINDS,
)
def test_loss_is_zero_when_every_margin_holds(classes, extra_bits, noise_seed, margin, kind):
    # One class per item, codes near their class centre 0.9 * e_c: within a class the distance
    # is at most 0.1 * sqrt(q) <= 0.25, across classes at least 0.9 * sqrt(2) - 0.25 > 1, so
    # eps + d(relevant) - d(irrelevant) < 0.5 + 0.25 - 1 < 0 for every triplet.
    classes = np.array(classes)
    bits = 4 + extra_bits
    labels = np.eye(4, dtype=np.float32)[classes]
    rng = np.random.default_rng(noise_seed)

    def codes():
        noise = rng.uniform(-0.05, 0.05, size=(len(classes), bits))
        return (0.9 * np.eye(bits)[classes] + noise).astype(np.float32)

    image, text, image_hat, text_hat = codes(), codes(), codes(), codes()
    retrieval = retrieval_loss(image, text, labels, margin, kind)
    adversarial = adversarial_loss(image, text, image_hat, text_hat, labels, margin, kind)
    assert float(retrieval["total"]) == 0.0
    assert float(adversarial["total"]) == 0.0


@PROPERTY_SETTINGS
@given(batch=cross_modal_batches(min_batch=2, max_batch=7), kind=KINDS, data=st.data())
def test_same_modality_loss_is_permutation_invariant(batch, kind, data):
    image, _, _, _, labels = batch
    permutation = np.array(data.draw(st.permutations(range(len(labels)))))
    original = retrieval_loss(image, image, labels, 1.0, kind)["i2i"]
    permuted = retrieval_loss(
        image[permutation], image[permutation], labels[permutation], 1.0, kind
    )["i2i"]
    # Same set of triplet hinges, summed in another order.
    np.testing.assert_allclose(float(permuted), float(original), rtol=1e-5, atol=1e-6)


@PROPERTY_SETTINGS
@given(problem=triplet_problems(), data=st.data())
def test_triplet_loss_invariant_to_reordering_queries_and_database(problem, data):
    query, database, similarity = problem
    rows = np.array(data.draw(st.permutations(range(len(query)))))
    cols = np.array(data.draw(st.permutations(range(len(database)))))
    reordered = _loss(query[rows], database[cols], similarity[rows][:, cols], 0.5)
    np.testing.assert_allclose(reordered, _loss(query, database, similarity, 0.5),
                               rtol=1e-5, atol=1e-6)


@PROPERTY_SETTINGS
@given(batch=cross_modal_batches(), kind=KINDS, margin=MARGINS)
def test_swapping_the_modalities_swaps_the_terms(batch, kind, margin):
    # The loss is not symmetric in A -> B, but L_ret and L_adv as a whole are symmetric in the
    # two modalities: swapping image and text swaps t2i <-> i2t and i2i <-> t2t exactly.
    image, text, image_hat, text_hat, labels = batch
    forward = retrieval_loss(image, text, labels, margin, kind)
    swapped = retrieval_loss(text, image, labels, margin, kind)
    for a, b in (("t2i", "i2t"), ("i2t", "t2i"), ("i2i", "t2t"), ("t2t", "i2i")):
        assert float(forward[a]) == float(swapped[b])
    np.testing.assert_allclose(float(forward["total"]), float(swapped["total"]), rtol=1e-6)
    adv = adversarial_loss(image, text, image_hat, text_hat, labels, margin, kind)
    adv_swapped = adversarial_loss(text, image, text_hat, image_hat, labels, margin, kind)
    assert float(adv["t2i"]) == float(adv_swapped["i2t"])
    assert float(adv["i2t"]) == float(adv_swapped["t2i"])


@PROPERTY_SETTINGS
@given(problem=triplet_problems(), margin=MARGINS)
def test_only_the_order_of_similarity_matters(problem, margin):
    query, database, similarity = problem
    value = _loss(query, database, similarity, margin)
    # A strictly increasing map of S keeps every triplet (exact on quarters).
    assert _loss(query, database, 3.0 * similarity + 1.0, margin) == value
    assert _loss(query, database, similarity**2, margin) == value


@PROPERTY_SETTINGS
@given(problem=triplet_problems(), data=st.data())
def test_triplet_loss_invariant_to_isometries_of_code_space(problem, data):
    query, database, similarity = problem
    bits = query.shape[1]
    value = _loss(query, database, similarity, 1.0)
    # Flipping the sign of some bits in both sets keeps every distance bit-exact.
    signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=bits,
                                        max_size=bits)), np.float32)
    np.testing.assert_allclose(_loss(query * signs, database * signs, similarity, 1.0), value,
                               rtol=1e-6)
    # Permuting bits or translating both sets keeps distances up to rounding.
    order = np.array(data.draw(st.permutations(range(bits))))
    np.testing.assert_allclose(_loss(query[:, order], database[:, order], similarity, 1.0),
                               value, rtol=1e-5, atol=1e-6)
    shift = np.float32(data.draw(st.floats(-1.0, 1.0, width=32)))
    np.testing.assert_allclose(_loss(query + shift, database + shift, similarity, 1.0), value,
                               rtol=1e-5, atol=1e-5)


@PROPERTY_SETTINGS
@given(problem=triplet_problems(), small=MARGINS, large=MARGINS)
def test_loss_is_monotone_and_1_lipschitz_in_the_margin(problem, small, large):
    query, database, similarity = problem
    small, large = min(small, large), max(small, large)
    low = _loss(query, database, similarity, small)
    high = _loss(query, database, similarity, large)
    assert low <= high + 1e-6
    assert high - low <= (large - small) + 1e-5


@PROPERTY_SETTINGS
@given(problem=triplet_problems(), margin=MARGINS)
def test_identical_codes_give_exactly_the_margin(problem, margin):
    query, database, similarity = problem
    row = query[:1]
    value = _loss(np.repeat(row, len(query), 0), np.repeat(row, len(database), 0), similarity,
                  margin)
    has_triplet = any(
        similarity[i, j] > similarity[i, k]
        for i in range(similarity.shape[0])
        for j in range(similarity.shape[1])
        for k in range(similarity.shape[1])
    )
    if has_triplet:
        np.testing.assert_allclose(value, margin, rtol=1e-5)
    else:
        assert value == 0.0


@PROPERTY_SETTINGS
@given(batch=cross_modal_batches(), kind=KINDS)
def test_gradients_are_finite(batch, kind):
    total, gradients = _traced(kind)[2](*batch)
    assert np.isfinite(float(total))
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))
