"""daah_tf.losses against plain NumPy / Python-loop references (design.md, Eq. 1-4)."""

# The DCMH-style baseline loss (Eq. D1-D3 in losses.dcmh_loss: the three terms of DCMH's
# objective J, Jiang & Li, CVPR 2017) against NumPy brute force, and a check that codes trained on
# it learn the classes (the earlier per-term means weighted the likelihood too weakly: on the
# free codes below they separate the classes by 1.2 bits, J's sums by 3.4).

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from daah_tf import losses


def np_similarity(labels_a, labels_b, kind):
    a = np.asarray(labels_a, np.float64)
    b = np.asarray(labels_b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            shared = float(np.dot(a[i], b[j]))
            if kind == "binary":
                out[i, j] = 1.0 if shared > 0 else 0.0
            elif kind == "count":
                out[i, j] = shared
            else:
                norm = np.linalg.norm(a[i]) * np.linalg.norm(b[j])
                out[i, j] = shared / norm if norm > 0 else 0.0
    return out


def np_distance(codes_a, codes_b):
    a = np.asarray(codes_a, np.float64)
    b = np.asarray(codes_b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = np.sqrt(np.sum((a[i] - b[j]) ** 2))
    return out


def brute_triplet(query, database, similarity, margin):
    """Mean over <i, j, k> with S(i,j) > S(i,k) of max(0, eps + ||a_i - b_j|| - ||a_i - b_k||)."""
    query = np.asarray(query, np.float64)
    database = np.asarray(database, np.float64)
    similarity = np.asarray(similarity)
    total, count = 0.0, 0
    for i in range(len(query)):
        for j in range(len(database)):
            for k in range(len(database)):
                if similarity[i, j] > similarity[i, k]:
                    d_ij = np.linalg.norm(query[i] - database[j])
                    d_ik = np.linalg.norm(query[i] - database[k])
                    total += max(0.0, margin + d_ij - d_ik)
                    count += 1
    return total / count if count else 0.0


def random_labels(rng, batch, num_labels, density=0.4):
    labels = (rng.uniform(size=(batch, num_labels)) < density).astype(np.float32)
    labels[0] = 0.0  # always one unlabelled row
    labels[1, 0] = 1.0  # and at least one labelled one
    return labels


def random_codes(rng, batch, bits):
    return np.tanh(rng.normal(size=(batch, bits))).astype(np.float32)


KINDS = ("binary", "count", "cosine")


CASES = [(5, 4, 3), (6, 8, 4), (7, 5, 6)]  # (batch, bits, labels)


@pytest.mark.parametrize("kind", KINDS)
def test_label_similarity_matches_numpy(kind):
    rng = np.random.default_rng(1)
    labels_a = random_labels(rng, 6, 5)
    labels_b = random_labels(rng, 4, 5)
    got = losses.label_similarity(labels_a, labels_b, kind)
    assert got.dtype == tf.float32
    assert got.shape == (6, 4)
    np.testing.assert_allclose(got.numpy(), np_similarity(labels_a, labels_b, kind), atol=1e-6)


def test_label_similarity_binary_and_count_values():
    labels = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]], np.int32)
    binary = losses.label_similarity(labels, labels, "binary").numpy()
    count = losses.label_similarity(labels, labels, "count").numpy()
    np.testing.assert_array_equal(
        binary, [[1, 1, 0, 1], [1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1]]
    )
    np.testing.assert_array_equal(count, [[2, 1, 0, 2], [1, 2, 0, 2], [0, 0, 0, 0], [2, 2, 0, 3]])


def test_label_similarity_cosine_keeps_equal_cosines_equal():
    # Anchor with 3 labels; j holds one of them and nothing else (cos 1/sqrt(3)); k holds all
    # three plus six others (cos 3/sqrt(27) = 1/sqrt(3)). A tie: no triplet may come from it.
    anchor = np.zeros(12, np.float32)
    anchor[:3] = 1
    j = np.zeros(12, np.float32)
    j[0] = 1
    k = np.zeros(12, np.float32)
    k[:3] = 1
    k[3:9] = 1
    similarity = losses.label_similarity(anchor[None], np.stack([j, k]), "cosine").numpy()
    assert similarity[0, 0] == similarity[0, 1]
    np.testing.assert_allclose(similarity[0, 0], 1 / np.sqrt(3), rtol=1e-6)
    codes = np.array([[0.0, 0.0]], np.float32)
    database = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    assert float(losses.triplet_ranking_loss(codes, database, similarity, 1.0)) == 0.0


def test_label_similarity_rejects_unknown_kind():
    with pytest.raises(ValueError, match="similarity kind"):
        losses.label_similarity(np.ones((2, 2)), np.ones((2, 2)), "jaccard")


def test_pairwise_euclidean_matches_numpy():
    rng = np.random.default_rng(2)
    a = random_codes(rng, 5, 6)
    b = random_codes(rng, 7, 6)
    b[3] = a[1]  # one coinciding pair
    got = losses.pairwise_euclidean(a, b)
    assert got.shape == (5, 7)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), np_distance(a, b), rtol=1e-5, atol=1e-6)
    assert got.numpy()[1, 3] == 0.0


def test_pairwise_euclidean_casts_low_precision_codes_to_float32():
    a = tf.constant([[0.5, -0.25]], tf.bfloat16)
    b = tf.constant([[0.5, 0.75]], tf.float16)
    got = losses.pairwise_euclidean(a, b)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), [[1.0]])


def test_pairwise_euclidean_gradient_finite_at_coinciding_codes():
    a = tf.Variable([[0.1, 0.2], [0.3, -0.4]])
    b = tf.Variable([[0.1, 0.2], [0.5, 0.5]])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.pairwise_euclidean(a, b))
    grad_a, grad_b = tape.gradient(total, [a, b])
    assert np.all(np.isfinite(grad_a.numpy()))
    assert np.all(np.isfinite(grad_b.numpy()))
    # The coinciding pair (0, 0) contributes nothing; the others give unit vectors.
    expected = (np.array([0.1, 0.2]) - np.array([0.5, 0.5])) / np.linalg.norm([-0.4, -0.3])
    np.testing.assert_allclose(grad_a.numpy()[0], expected, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch, bits, num_labels", CASES)
def test_triplet_loss_matches_brute_force_for_label_similarity(kind, batch, bits, num_labels):
    rng = np.random.default_rng(batch * 10 + bits)
    labels = random_labels(rng, batch, num_labels)
    query = random_codes(rng, batch, bits)
    database = random_codes(rng, batch, bits)
    similarity = losses.label_similarity(labels, labels, kind).numpy()
    # The NumPy similarity orders the same triplets (no tie broken by rounding).
    reference_similarity = np_similarity(labels, labels, kind)
    for i in range(batch):
        np.testing.assert_array_equal(
            similarity[i][:, None] > similarity[i][None, :],
            reference_similarity[i][:, None] > reference_similarity[i][None, :] + 1e-12,
        )
    for margin in (0.1, 1.0):
        got = losses.triplet_ranking_loss(query, database, similarity, margin)
        assert got.dtype == tf.float32 and got.shape == ()
        expected = brute_triplet(query, database, reference_similarity, margin)
        assert expected > 0.0
        np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_loss_matches_brute_force_for_random_float_similarity(seed):
    rng = np.random.default_rng(seed)
    query = random_codes(rng, 5, 4)
    database = random_codes(rng, 7, 4)  # Na != Nb
    similarity = rng.normal(size=(5, 7)).astype(np.float32)
    similarity[2, :] = 0.5  # an anchor without any triplet
    margin = tf.constant(0.7)  # a tensor margin works too
    got = losses.triplet_ranking_loss(query, database, similarity, margin)
    expected = brute_triplet(query, database, similarity, 0.7)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_triplet_loss_hand_computed():
    # One anchor at the origin, j (relevant) at distance 2, k (irrelevant) at distance 1.
    query = np.array([[0.0, 0.0]], np.float32)
    database = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
    similarity = np.array([[1.0, 0.0]], np.float32)
    # One valid triplet (0, 0, 1): max(0, 0.5 + 2 - 1) = 1.5.
    assert float(losses.triplet_ranking_loss(query, database, similarity, 0.5)) == 1.5
    # Swap the database: the margin holds (0.5 + 1 - 2 < 0).
    assert float(losses.triplet_ranking_loss(query, database[::-1], similarity, 0.5)) == 0.0


def test_triplet_loss_is_a_mean_over_valid_triplets():
    query = np.zeros((2, 2), np.float32)
    database = np.zeros((3, 2), np.float32)
    # Anchor 0: S = (2, 1, 0) -> 3 triplets; anchor 1: (1, 1, 1) -> none. Each hinge = margin.
    similarity = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    np.testing.assert_allclose(
        float(losses.triplet_ranking_loss(query, database, similarity, 0.3)), 0.3, rtol=1e-6
    )


def test_triplet_loss_float32_for_low_precision_codes():
    rng = np.random.default_rng(3)
    codes = random_codes(rng, 5, 4)
    similarity = losses.label_similarity(random_labels(rng, 5, 3), random_labels(rng, 5, 3))
    for dtype in (tf.float16, tf.bfloat16):
        low = tf.cast(codes, dtype)
        got = losses.triplet_ranking_loss(low, low, similarity, 1.0)
        assert got.dtype == tf.float32
        expected = brute_triplet(tf.cast(low, tf.float32).numpy(), tf.cast(low, tf.float32).numpy(),
                                 similarity.numpy(), 1.0)
        np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_retrieval_loss_is_the_four_brute_force_terms(kind):
    rng = np.random.default_rng(4)
    batch, bits = 6, 5
    labels = random_labels(rng, batch, 4)
    image = random_codes(rng, batch, bits)
    text = 0.5 * random_codes(rng, batch, bits)  # different scale: t2i != i2t, i2i != t2t
    similarity = np_similarity(labels, labels, kind)
    terms = losses.retrieval_loss(image, text, labels, 0.8, kind)
    assert set(terms) == {"t2i", "i2t", "i2i", "t2t", "total"}
    expected = {
        "t2i": brute_triplet(text, image, similarity, 0.8),  # F_{T->I}: text anchors
        "i2t": brute_triplet(image, text, similarity, 0.8),  # F_{I->T}: image anchors
        "i2i": brute_triplet(image, image, similarity, 0.8),
        "t2t": brute_triplet(text, text, similarity, 0.8),
    }
    # The terms differ from each other, so a swapped argument order would be caught.
    assert abs(expected["t2i"] - expected["i2t"]) > 1e-4
    assert abs(expected["i2i"] - expected["t2t"]) > 1e-4
    for name, value in expected.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(terms["total"]), sum(expected.values()), rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_adversarial_loss_is_attended_queries_against_unattended_database(kind):
    rng = np.random.default_rng(5)
    batch, bits = 7, 4
    labels = random_labels(rng, batch, 3)
    image, text = random_codes(rng, batch, bits), random_codes(rng, batch, bits)
    image_hat, text_hat = random_codes(rng, batch, bits), 0.3 * random_codes(rng, batch, bits)
    similarity = np_similarity(labels, labels, kind)
    terms = losses.adversarial_loss(image, text, image_hat, text_hat, labels, 1.0, kind)
    assert set(terms) == {"t2i", "i2t", "total"}
    t2i = brute_triplet(text, image_hat, similarity, 1.0)  # F_{T->I^}
    i2t = brute_triplet(image, text_hat, similarity, 1.0)  # F_{I->T^}
    # Neither the reversed direction nor the attended database would give the same numbers.
    assert abs(t2i - brute_triplet(image_hat, text, similarity, 1.0)) > 1e-3
    assert abs(i2t - brute_triplet(image, text, similarity, 1.0)) > 1e-3
    np.testing.assert_allclose(float(terms["t2i"]), t2i, rtol=1e-5)
    np.testing.assert_allclose(float(terms["i2t"]), i2t, rtol=1e-5)
    np.testing.assert_allclose(float(terms["total"]), t2i + i2t, rtol=1e-5)


def test_binary_codes_sign_with_zero_as_plus_one():
    codes = tf.constant([[0.3, -0.2, 0.0, -0.0], [-1.0, 1.0, 1e-8, -1e-8]])
    bits = losses.binary_codes(codes)
    assert bits.dtype == tf.int8
    np.testing.assert_array_equal(bits.numpy(), [[1, -1, 1, 1], [-1, 1, 1, -1]])
    rng = np.random.default_rng(6)
    random = random_codes(rng, 8, 6)
    got = losses.binary_codes(random).numpy()
    assert set(np.unique(got)) <= {-1, 1}
    np.testing.assert_array_equal(got, np.where(random >= 0, 1, -1))


def test_straight_through_sign_is_sign_forward_and_identity_backward():
    codes = tf.Variable([[0.3, -0.2, 0.0], [-1e-8, 0.9, -0.7]])
    weights = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with tf.GradientTape() as tape:
        signs = losses.straight_through_sign(codes)
        value = tf.reduce_sum(weights * signs)
    np.testing.assert_array_equal(signs.numpy(), [[1, -1, 1], [-1, 1, -1]])  # as binary_codes
    np.testing.assert_array_equal(tape.gradient(value, codes).numpy(), weights.numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_binary_aware_retrieval_loss_mixes_real_and_binary_brute_force(kind):
    rng = np.random.default_rng(7)
    batch, bits, share = 7, 6, 0.3
    labels = random_labels(rng, batch, 3)
    image, text = random_codes(rng, batch, bits), 0.4 * random_codes(rng, batch, bits)
    similarity = np_similarity(labels, labels, kind)
    image_bits, text_bits = np.where(image >= 0, 1.0, -1.0), np.where(text >= 0, 1.0, -1.0)
    terms = losses.binary_aware_retrieval_loss(image, text, labels, 1.0, kind, share)
    pairs = {"t2i": (text, image, text_bits, image_bits),
             "i2t": (image, text, image_bits, text_bits),
             "i2i": (image, image, image_bits, image_bits),
             "t2t": (text, text, text_bits, text_bits)}
    total = 0.0
    for name, (query, database, query_bits, database_bits) in pairs.items():
        real = brute_triplet(query, database, similarity, 1.0)
        binary = brute_triplet(query_bits, database_bits, similarity, 1.0)
        assert abs(real - binary) > 1e-4, name  # the two halves differ: the mix is visible
        expected = (1 - share) * real + share * binary
        np.testing.assert_allclose(float(terms[name]), expected, rtol=1e-5, err_msg=name)
        total += expected
    np.testing.assert_allclose(float(terms["total"]), total, rtol=1e-5)
    # A share of 0 is Eq. 2 exactly.
    plain = losses.retrieval_loss(image, text, labels, 1.0, kind)
    mixed = losses.binary_aware_retrieval_loss(image, text, labels, 1.0, kind, 0.0)
    assert all(float(plain[name]) == float(mixed[name]) for name in plain)


def test_binary_share_gradient_is_the_ranking_gradient_at_the_binary_codes():
    rng = np.random.default_rng(8)
    labels = random_labels(rng, 6, 3)
    image, text = tf.Variable(random_codes(rng, 6, 5)), tf.Variable(random_codes(rng, 6, 5))
    with tf.GradientTape() as tape:
        value = losses.binary_aware_retrieval_loss(image, text, labels, 1.0, "binary", 1.0)
    got = tape.gradient(value["total"], [image, text])
    image_bits = tf.Variable(np.where(image.numpy() >= 0, 1.0, -1.0).astype(np.float32))
    text_bits = tf.Variable(np.where(text.numpy() >= 0, 1.0, -1.0).astype(np.float32))
    with tf.GradientTape() as tape:
        at_bits = losses.retrieval_loss(image_bits, text_bits, labels, 1.0, "binary")
    expected = tape.gradient(at_bits["total"], [image_bits, text_bits])
    assert float(tf.reduce_sum(tf.abs(expected[0]))) > 0.0
    for gradient, reference in zip(got, expected, strict=True):
        np.testing.assert_allclose(gradient.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)



@pytest.mark.parametrize("num_labels,bits", [(8, 32), (10, 16), (3, 4), (40, 16), (5, 12)])
def test_hash_centers_are_fixed_signs_far_apart(num_labels, bits):
    centers = losses.hash_centers(num_labels, bits)
    assert centers.shape == (num_labels, bits) and centers.dtype == np.float32
    assert set(np.unique(centers)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(centers, losses.hash_centers(num_labels, bits))  # no state
    distances = [(a != b).sum() for i, a in enumerate(centers) for b in centers[i + 1:]]
    if bits & (bits - 1) == 0 and num_labels <= 2 * bits:
        # Hadamard rows and their negatives: q/2 bits apart, or q for a row and its negative.
        assert set(distances) <= {bits // 2, bits}
    else:
        assert min(distances) > 0  # random signs: distinct at these sizes


@pytest.mark.parametrize("seed", [0, 1])
def test_center_loss_matches_numpy_loop(seed):
    rng = np.random.default_rng(seed)
    batch, bits, num_labels = 6, 8, 4
    image, text = random_codes(rng, batch, bits), random_codes(rng, batch, bits)
    labels = (rng.random((batch, num_labels)) < 0.4).astype(np.float32)
    labels[0] = 0.0  # an item without labels: no term
    labels[1] = [1, 1, 0, 0]  # two labels: ties where their centres disagree
    centers = losses.hash_centers(num_labels, bits)
    total_weight, sums = 0, [0.0, 0.0]
    for i in range(batch):
        for k in range(bits):
            vote = sum(centers[j, k] for j in range(num_labels) if labels[i, j])
            if vote == 0:
                continue
            target = 1.0 if vote > 0 else 0.0
            total_weight += 1
            for m, codes in enumerate((image, text)):
                p = (1.0 + codes[i, k]) / 2.0
                sums[m] -= target * np.log(p) + (1 - target) * np.log(1 - p)
    expected = sum(s / total_weight for s in sums)
    got = losses.center_loss(tf.constant(image, tf.float16), tf.constant(text), labels, centers)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), expected, rtol=2e-3)  # float16 image codes
    np.testing.assert_allclose(float(losses.center_loss(image, text, labels, centers)), expected,
                               rtol=1e-5)
    # Codes at their centres cost (almost) nothing; no labels at all: exactly 0.
    targets = losses.center_targets(labels, centers).numpy()
    assert float(losses.center_loss(targets, targets, labels, centers)) < 1e-4
    assert float(losses.center_loss(image, text, 0 * labels, centers)) == 0.0

@pytest.mark.parametrize("seed", [0, 1])
def test_quantization_loss_matches_numpy_loop(seed):
    rng = np.random.default_rng(seed)
    image, text = random_codes(rng, 7, 5), random_codes(rng, 7, 5)
    expected = 0.0
    for codes in (image, text):
        total = 0.0
        for row in codes:
            for value in row:
                total += (value - (1.0 if value >= 0 else -1.0)) ** 2  # (H - sign(H))^2
        expected += total / codes.size
    got = losses.quantization_loss(tf.constant(image, tf.float16), tf.constant(text))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), expected, rtol=2e-3)  # float16 image codes
    np.testing.assert_allclose(float(losses.quantization_loss(image, text)), expected, rtol=1e-5)
    # Binary codes are at the minimum; all-zero codes are one per modality away.
    binary = np.where(image >= 0, 1.0, -1.0).astype(np.float32)
    assert float(losses.quantization_loss(binary, -binary)) == 0.0
    assert float(losses.quantization_loss(0 * image, 0 * text)) == 2.0


def _loss_and_gradients(image, text, labels, kind="binary", margin=1.0):
    image = tf.Variable(image)
    text = tf.Variable(text)
    image_hat = tf.Variable(image * 0.5)
    text_hat = tf.Variable(text * 0.5)
    variables = [image, text, image_hat, text_hat]
    with tf.GradientTape() as tape:
        total = losses.retrieval_loss(image, text, labels, margin, kind)["total"]
        total += losses.adversarial_loss(image, text, image_hat, text_hat, labels, margin, kind)[
            "total"
        ]
    return total, tape.gradient(total, variables)


@pytest.mark.parametrize("kind", KINDS)
def test_identical_codes_give_finite_loss_and_gradients(kind):
    rng = np.random.default_rng(7)
    labels = random_labels(rng, 6, 3)
    row = random_codes(rng, 1, 4)
    codes = np.repeat(row, 6, axis=0)
    total, gradients = _loss_and_gradients(codes, codes.copy(), labels, kind, margin=0.5)
    # Every distance is 0, so every valid hinge is exactly the margin: 6 terms of 0.5.
    np.testing.assert_allclose(float(total), 6 * 0.5, rtol=1e-6)
    for gradient in gradients:
        assert gradient is not None
        assert np.all(np.isfinite(gradient.numpy()))


def test_partly_identical_codes_give_finite_gradients():
    rng = np.random.default_rng(8)
    labels = random_labels(rng, 6, 3)
    image = random_codes(rng, 6, 4)
    image[3] = image[2]
    text = image.copy()  # every (i, i) cross-modal distance is 0
    total, gradients = _loss_and_gradients(image, text, labels)
    assert np.isfinite(float(total)) and float(total) > 0
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))
    assert np.any(gradients[0].numpy() != 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "labels",
    [
        np.ones((5, 3), np.float32),  # every label equal
        np.tile(np.array([[1, 0, 1]], np.float32), (5, 1)),  # every row equal
        np.zeros((5, 3), np.float32),  # no labels at all
    ],
    ids=["all-ones", "equal-rows", "all-zero"],
)
def test_no_valid_triplet_gives_exact_zero_and_zero_gradients(kind, labels):
    rng = np.random.default_rng(9)
    image, text = random_codes(rng, 5, 4), random_codes(rng, 5, 4)
    similarity = losses.label_similarity(labels, labels, kind).numpy()
    assert np.all(similarity == similarity[0, 0])
    terms = losses.retrieval_loss(image, text, labels, 1.0, kind)
    for value in terms.values():
        assert float(value) == 0.0
    total, gradients = _loss_and_gradients(image, text, labels, kind)
    assert float(total) == 0.0
    for gradient in gradients:
        np.testing.assert_array_equal(gradient.numpy(), 0.0)


def test_no_valid_triplet_for_triplet_loss_directly():
    codes = random_codes(np.random.default_rng(10), 4, 3)
    assert float(losses.triplet_ranking_loss(codes, codes, np.full((4, 4), 0.25), 1.0)) == 0.0
    # Empty batches are triplet-free too.
    empty = np.zeros((0, 3), np.float32)
    assert float(losses.triplet_ranking_loss(empty, empty, np.zeros((0, 0)), 1.0)) == 0.0


def test_brute_force_reference_self_check():
    # The reference itself on a case small enough to enumerate by hand.
    similarity = np.array([[1, 0], [0, 1]])
    query = np.array([[0.0], [1.0]])
    database = np.array([[0.0], [1.0]])
    # Triplets: (0, 0, 1): max(0, 1 + 0 - 1) = 0; (1, 1, 0): max(0, 1 + 0 - 1) = 0.
    assert brute_triplet(query, database, similarity, 1.0) == 0.0
    assert brute_triplet(query, database, similarity, 1.5) == 0.5


def numpy_dcmh(f, g, labels):
    """(nll, quantization, balance) of DCMH's J, each divided by the batch size."""
    batch, _ = f.shape
    nll = 0.0
    for i in range(batch):  # Eq. D1: -sum_ij [S_ij Theta_ij - log(1 + e^Theta_ij)]
        for j in range(batch):
            s = float(labels[i] @ labels[j] > 0)
            theta = 0.5 * float(f[i] @ g[j])
            nll -= s * theta - np.log1p(np.exp(theta))
    b = np.where(f + g >= 0, 1.0, -1.0)  # DCMH's B = sign(gamma (F + G))
    quantization = np.sum((b - f) ** 2) + np.sum((b - g) ** 2)  # Eq. D2
    balance = np.sum(f.sum(0) ** 2) + np.sum(g.sum(0) ** 2)  # Eq. D3: ||F 1||^2 + ||G 1||^2
    return nll / batch, quantization / batch, balance / batch


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dcmh_loss_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    g = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    labels = (rng.random((6, 4)) < 0.4).astype(np.float32)
    terms = losses.dcmh_loss(f, g, labels, quantization_weight=0.7, balance_weight=0.3)
    nll, quantization, balance = numpy_dcmh(f.astype(float), g.astype(float), labels)
    np.testing.assert_allclose(float(terms["nll"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(terms["quantization"]), quantization, rtol=1e-5)
    np.testing.assert_allclose(float(terms["balance"]), balance, rtol=1e-5)
    np.testing.assert_allclose(float(terms["total"]), nll + 0.7 * quantization + 0.3 * balance,
                               rtol=1e-5)


def test_dcmh_free_codes_learn_the_classes_instead_of_one_constant_code():
    """tanh codes optimised directly on the loss, 8 single-label classes (S is mostly 0, as on
    Wiki): the bits split the batch and the codes separate the classes."""
    rng = np.random.default_rng(0)
    classes, per_class, bits = 8, 8, 16
    labels = np.eye(classes, dtype=np.float32)[np.repeat(np.arange(classes), per_class)]
    f_param = tf.Variable(rng.normal(0, 0.1, (classes * per_class, bits)), dtype=tf.float32)
    g_param = tf.Variable(rng.normal(0, 0.1, (classes * per_class, bits)), dtype=tf.float32)
    optimizer = tf.keras.optimizers.Adam(0.01)
    for _ in range(300):
        with tf.GradientTape() as tape:
            loss = losses.dcmh_loss(tf.tanh(f_param), tf.tanh(g_param), labels)["total"]
        optimizer.apply_gradients(zip(tape.gradient(loss, [f_param, g_param]),
                                      [f_param, g_param], strict=True))
    f, g = np.sign(np.tanh(f_param.numpy())), np.sign(np.tanh(g_param.numpy()))
    assert np.abs(f.mean(0)).mean() < 0.5 and np.abs(g.mean(0)).mean() < 0.5  # not constant
    hamming = (bits - f @ g.T) / 2
    same = labels @ labels.T > 0
    assert hamming[same].mean() + 2 < hamming[~same].mean()


def test_log_one_plus_exp_is_stable_and_exact():
    x = tf.constant([-1000.0, -20.0, -1.0, 0.0, 1.0, 20.0, 1000.0])
    value = losses.log_one_plus_exp(x).numpy()
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value[1:-1], np.log1p(np.exp(x.numpy()[1:-1])), rtol=1e-6)
    assert value[-1] == 1000.0 and value[0] == 0.0
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(losses.log_one_plus_exp(x))
    assert np.all(np.isfinite(tape.gradient(y, x).numpy()))


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_scaled_margin_asks_the_same_code_size_at_every_length(bits):
    # Anchor and positive equal, negative flipped on a quarter of the bits, entries +-a: the
    # distance to the negative is 2a sqrt(q/4) = a sqrt(q). With eps = sqrt(q/16) the hinge is
    # sqrt(q) max(0, 1/4 - a): met at a >= 1/4 whatever q; a fixed eps = 1 is met at 1/sqrt(q).
    assert losses.scaled_margin(1.0, bits, "fixed") == 1.0
    assert losses.scaled_margin(1.0, bits, "sqrt_bits") == pytest.approx(np.sqrt(bits / 16))
    pattern = np.where(np.arange(bits) % 2 == 0, 1.0, -1.0)
    negative = pattern.copy()
    negative[: bits // 4] *= -1
    similarity = tf.constant([[1.0, 1.0, 0.0]])
    for a, met in ((0.26, True), (0.24, False)):
        codes = tf.constant(a * np.stack([pattern, pattern, negative]), tf.float32)
        eps = losses.scaled_margin(1.0, bits, "sqrt_bits")
        got = float(losses.triplet_ranking_loss(codes[:1], codes, similarity, eps))
        # brute force over the two valid triplets (j in {0, 1}, k = 2)
        rows = codes.numpy()
        to_negative = np.linalg.norm(rows[0] - rows[2])
        expected = np.mean([max(0.0, eps + np.linalg.norm(rows[0] - rows[j]) - to_negative)
                            for j in (0, 1)])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert (got == 0.0) == met
    with pytest.raises(ValueError, match="margin scaling"):
        losses.scaled_margin(1.0, bits, "linear")


@pytest.mark.parametrize("seed", [0, 1])
def test_attention_area_matches_numpy_loop(seed):
    rng = np.random.default_rng(seed)
    mask = (rng.random((5, 3, 4)) < 0.3).astype(np.float32)
    shares = []
    for image in mask:  # (1 / (H W)) sum over positions, per image
        shares.append(sum(image[h, w] for h in range(3) for w in range(4)) / 12.0)
    np.testing.assert_allclose(float(losses.attention_area(mask)), np.mean(shares), rtol=1e-6)
    assert losses.attention_area(tf.constant(mask, tf.float16)).dtype == tf.float32
