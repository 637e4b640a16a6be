"""The DAAH losses as pure functions (docs/design.md, "Losses"), one per equation.

Notation: a batch holds B pairs (I_i, T_i) with labels L_i; codes are real-valued hash-layer
outputs H in (-1, 1)^q; ||.|| is the Euclidean distance between codes; eps is the margin.

    (Eq. 1) F_{A->B} = mean over <i,j,k> with S(i,j) > S(i,k) of
                       max(0, eps + ||H^A_i - H^B_j|| - ||H^A_i - H^B_k||)
    (Eq. 2) L_ret = F_{T->I} + F_{I->T} + F_{I->I} + F_{T->T}      (attended codes)
    (Eq. 3) L_adv = F_{T->I^} + F_{I->T^}                         (query attended,
                                                                   database unattended)
    (Eq. 4) F = L_ret + L_adv
    (not in the paper) eps = margin * sqrt(q / 16) with `--margin_scaling=sqrt_bits`,
            `scaled_margin` (the paper's fixed eps: `fixed`, the default)
    (not in the paper) Q = mean (|H^I| - 1)^2 + mean (|H^T| - 1)^2, `quantization_loss`; the
            hashing player minimises F + lambda_q Q with `--quantization_weight` lambda_q > 0
    (not in the paper) L_ret = (1 - a) L_ret(H) + a L_ret(sign(H)), sign with a straight-through
            gradient, `binary_aware_retrieval_loss`, with `--binary_ranking_share` a > 0
    (not in the paper) C = per-bit cross-entropy of (1 + H) / 2 against the label's hash
            centre (1 + c) / 2, `center_loss` with `hash_centers`; the hashing player
            minimises F + lambda_c C with `--center_weight` lambda_c > 0
    (not in the paper) A = mean over images of |Z^I| / (H W), the attended share of the image
            feature map, `attention_area`; the attention player maximises its objective
            minus beta A with `--attention_area_weight` beta > 0 (feature maps only)

The paper writes a sum over triplets; we take the mean over the valid ones so that the loss scale
does not depend on the batch size or the label density (the margin keeps its meaning). All
functions compute in float32 whatever the codes' dtype, so mixed precision changes nothing here.
"""

import numpy as np
import tensorflow as tf

from daah_tf.config import MARGIN_SCALINGS, SIMILARITY_KINDS

# The code length at which --margin_scaling=sqrt_bits leaves --margin as it is.
MARGIN_REFERENCE_BITS = 16


def label_similarity(labels_a, labels_b, kind="binary"):
    """S(i, j) from multi-hot labels (docs/design.md, "Similarity").

    Args:
        labels_a: (Na, L) multi-hot (0/1) labels.
        labels_b: (Nb, L) multi-hot labels.
        kind: "binary" (1 if any label is shared, else 0), "count" (number of shared labels) or
            "cosine" (cosine of the label vectors). The ranking loss only compares S values, so
            every kind is valid; the graded ones order partial matches.

    Returns:
        (Na, Nb) float32 similarity.
    """
    a = tf.cast(labels_a, tf.float32)
    b = tf.cast(labels_b, tf.float32)
    shared = tf.matmul(a, b, transpose_b=True)
    if kind == "binary":
        return tf.cast(shared > 0, tf.float32)
    if kind == "count":
        return shared
    if kind == "cosine":
        # sqrt(shared^2 / (|a|^2 |b|^2)): one rounding of exact integer counts, so equal cosines
        # stay exactly equal (shared / (|a| |b|) rounds three times and can order a tie, e.g.
        # 1/sqrt(1*3) vs 3/sqrt(9*3), adding triplets that S does not order). shared >= 0.
        squared_norms = tf.reduce_sum(a * a, axis=1)[:, None] * tf.reduce_sum(b * b, axis=1)
        return tf.sqrt(tf.math.divide_no_nan(shared * shared, squared_norms))
    raise ValueError(f"similarity kind must be one of {SIMILARITY_KINDS}, got {kind!r}")


def pairwise_euclidean(codes_a, codes_b):
    """||H^A_i - H^B_j|| for every pair, with a finite gradient where two codes coincide.

    The square root's derivative is infinite at 0, which would turn a batch holding two equal
    codes into NaN gradients; where the squared distance is 0 the distance and its gradient are
    set to exactly 0 instead.

    Args:
        codes_a: (Na, q) codes.
        codes_b: (Nb, q) codes.

    Returns:
        (Na, Nb) float32 distances.
    """
    a = tf.cast(codes_a, tf.float32)
    b = tf.cast(codes_b, tf.float32)
    # Broadcast differences instead of |a|^2 + |b|^2 - 2ab: exact, never negative, and cheap at
    # batch sizes (B*B*q floats).
    squared = tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), axis=-1)
    positive = squared > 0.0
    safe = tf.where(positive, squared, tf.ones_like(squared))
    return tf.where(positive, tf.sqrt(safe), tf.zeros_like(squared))


def triplet_ranking_loss(query_codes, database_codes, similarity, margin):
    """Eq. 1: F_{A->B}, the mean hinge over all in-batch triplets with S(i,j) > S(i,k).

    Vectorised over the (Na, Nb, Nb) triplet cube; no Python loop.

    Args:
        query_codes: (Na, q) codes H^A (the anchors i).
        database_codes: (Nb, q) codes H^B (the candidates j and k).
        similarity: (Na, Nb) S between anchor i and candidate j, binary or graded.
        margin: eps, a Python float or scalar tensor.

    Returns:
        Scalar float32; 0 when no triplet is valid (e.g. every label equal).
    """
    distance = pairwise_euclidean(query_codes, database_codes)
    similarity = tf.cast(similarity, tf.float32)
    # valid[i, j, k] = S(i, j) > S(i, k): j should rank above k for anchor i.
    valid = tf.cast(similarity[:, :, None] > similarity[:, None, :], tf.float32)
    hinge = tf.nn.relu(
        tf.cast(margin, tf.float32) + distance[:, :, None] - distance[:, None, :]
    )
    count = tf.reduce_sum(valid)
    return tf.math.divide_no_nan(tf.reduce_sum(hinge * valid), count)


def scaled_margin(margin, bits, scaling="fixed"):
    """The eps of Eq. 1 for q-bit codes (the scaling is not in the paper; README "Results").

        fixed:     eps = margin                      (the paper's)
        sqrt_bits: eps = margin * sqrt(q / 16)

    Why: the Euclidean distance between two codes with entries of size a grows like a sqrt(q),
    so a fixed eps is met by 64-bit codes at half the |H| that 16-bit codes need; their entries
    then sit near 0, where sign(H) keeps least of what the ranking held. Scaled with sqrt(q),
    eps asks the same |H| at every code length (and is the paper's eps at 16 bits).

    Args:
        margin: the --margin flag, eps at 16 bits when scaled.
        bits: q, the code length.
        scaling: one of MARGIN_SCALINGS.

    Returns:
        Python float.
    """
    if scaling not in MARGIN_SCALINGS:
        raise ValueError(f"margin scaling must be one of {MARGIN_SCALINGS}, got {scaling!r}")
    if scaling == "fixed":
        return float(margin)
    return float(margin) * (bits / MARGIN_REFERENCE_BITS) ** 0.5


def retrieval_loss(image_codes, text_codes, labels, margin, similarity_kind="binary"):
    """Eq. 2: L_ret = F_{T->I} + F_{I->T} + F_{I->I} + F_{T->T} over attended codes.

    Args:
        image_codes: (B, q) attended image codes H^I.
        text_codes: (B, q) attended text codes H^T.
        labels: (B, L) multi-hot labels of the pairs.
        margin: eps.
        similarity_kind: see `label_similarity`.

    Returns:
        Dict of scalar float32 terms: "t2i", "i2t", "i2i", "t2t" and their sum "total".
    """
    similarity = label_similarity(labels, labels, similarity_kind)
    terms = {
        "t2i": triplet_ranking_loss(text_codes, image_codes, similarity, margin),
        "i2t": triplet_ranking_loss(image_codes, text_codes, similarity, margin),
        "i2i": triplet_ranking_loss(image_codes, image_codes, similarity, margin),
        "t2t": triplet_ranking_loss(text_codes, text_codes, similarity, margin),
    }
    terms["total"] = tf.add_n(list(terms.values()))
    return terms


def adversarial_loss(
    image_codes,
    text_codes,
    unattended_image_codes,
    unattended_text_codes,
    labels,
    margin,
    similarity_kind="binary",
):
    """Eq. 3: L_adv = F_{T->I^} + F_{I->T^}: attended queries against unattended database codes.

    The hashing player minimises it (similarity survives even in the unattended part); the
    attention player maximises it (the unattended part must not carry similarity).

    Args:
        image_codes: (B, q) attended image codes H^I.
        text_codes: (B, q) attended text codes H^T.
        unattended_image_codes: (B, q) codes of the unattended image features, H^I^.
        unattended_text_codes: (B, q) codes of the unattended text features, H^T^.
        labels: (B, L) multi-hot labels.
        margin: eps.
        similarity_kind: see `label_similarity`.

    Returns:
        Dict of scalar float32 terms: "t2i", "i2t" and their sum "total".
    """
    similarity = label_similarity(labels, labels, similarity_kind)
    terms = {
        "t2i": triplet_ranking_loss(text_codes, unattended_image_codes, similarity, margin),
        "i2t": triplet_ranking_loss(image_codes, unattended_text_codes, similarity, margin),
    }
    terms["total"] = terms["t2i"] + terms["i2t"]
    return terms


def quantization_loss(image_codes, text_codes):
    """Q, the distance of the retrieval codes from their binary codes (not in the paper; the
    hashing player's `--quantization_weight` term, measured in README "Results", "Where the
    64-bit T->I deficit goes"):

        Q = mean over entries of (|H^I| - 1)^2  +  mean over entries of (|H^T| - 1)^2

    For H in (-1, 1) each entry is (H - sign(H))^2. The ranking losses compare Euclidean
    distances with a fixed margin, which long codes meet with small |H|; sign(H) then drops
    what the continuous codes held, by an amount that depends on the seed.

    Args:
        image_codes: (B, q) attended image codes H^I.
        text_codes: (B, q) attended text codes H^T.

    Returns:
        Scalar float32.
    """
    return sum(tf.reduce_mean(tf.square(tf.abs(tf.cast(codes, tf.float32)) - 1.0))
               for codes in (image_codes, text_codes))


def hash_centers(num_labels, bits):
    """(L, q) float32 in {-1, +1}: one fixed target code per label for `center_loss`.

    Rows of the Sylvester Hadamard matrix and of its negative when q is a power of two and
    L <= 2q (any two centres then differ in q/2 bits, or in all q), as Central Similarity
    Quantization (Yuan et al., CVPR 2020) builds them; otherwise random signs from a fixed
    generator seeded by (L, q). A function of (L, q) alone: every run and seed of a dataset
    and code length gets the same centres, and nothing needs saving.
    """
    num_labels, bits = int(num_labels), int(bits)
    if bits >= 1 and bits & (bits - 1) == 0 and num_labels <= 2 * bits:
        hadamard = np.ones((1, 1))
        while hadamard.shape[0] < bits:
            hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
        return np.concatenate([hadamard, -hadamard])[:num_labels].astype(np.float32)
    generator = np.random.default_rng([num_labels, bits])
    return generator.choice(np.array([-1.0, 1.0], np.float32), size=(num_labels, bits))


def center_targets(labels, centers):
    """(B, q) float32 in {-1, 0, +1}: each item's hash centre, sign of the mean of its labels'
    centres (`hash_centers`); 0 where they tie (an item without labels: all 0).

    Args:
        labels: (B, L) multi-hot.
        centers: (L, q) in {-1, +1}.
    """
    return tf.sign(tf.matmul(tf.cast(labels, tf.float32), tf.cast(centers, tf.float32)))


def center_loss(image_codes, text_codes, labels, centers):
    """C, the cross-entropy of the codes against their labels' hash centres (not in the paper;
    the hashing player's `--center_weight` term, Central Similarity Quantization's pointwise
    loss):

        t = center_targets(L_i, centers)                      (in {-1, 0, +1}^q)
        C = sum over modalities m of  mean over (i, k) with t_ik != 0 of
            -[(1 + t_ik)/2 log((1 + H^m_ik)/2) + (1 - t_ik)/2 log((1 - H^m_ik)/2)]

    Why: L_ret learns from the pairs and triplets of a batch; with few training pairs a
    pointwise pull of every code towards a fixed code of its label is the signal the linear
    floor (ridge to the labels) lives on. Bits where an item's labels tie (t = 0) and items
    without labels carry no term.

    Args:
        image_codes: (B, q) attended image codes H^I in (-1, 1).
        text_codes: (B, q) attended text codes H^T.
        labels: (B, L) multi-hot.
        centers: (L, q) in {-1, +1} (`hash_centers`).

    Returns:
        Scalar float32 (0 when no bit has a target).
    """
    targets = center_targets(labels, centers)
    weights = tf.abs(targets)
    positive = (1.0 + targets) / 2.0
    count = tf.maximum(tf.reduce_sum(weights), 1.0)
    total = 0.0
    for codes in (image_codes, text_codes):
        # (1 + H) / 2 kept off 0 and 1: tanh saturates in float32 and log(0) is -inf.
        p = tf.clip_by_value((1.0 + tf.cast(codes, tf.float32)) / 2.0, 1e-6, 1.0 - 1e-6)
        entropy = -(positive * tf.math.log(p) + (1.0 - positive) * tf.math.log(1.0 - p))
        total += tf.reduce_sum(weights * entropy) / count
    return total


def attention_area(mask):
    """A, the attended share of each image's feature map, averaged over the batch (not in the
    paper; the attention player's `--attention_area_weight` cost):

        A = mean over i of (1 / (H W)) sum over positions (h, w) of Z^I_ihw

    Its gradient reaches the attention scores through the mask's straight-through estimator.
    Through the softmax, lowering A raises the scores of the positions far above the threshold
    and lowers those near it: the mask keeps its strongest positions and drops the marginal
    ones (the eraser's border cells around an object).

    Args:
        mask: (B, H, W) image attention mask Z^I in {0, 1}.

    Returns:
        Scalar float32 in [0, 1].
    """
    return tf.reduce_mean(tf.cast(mask, tf.float32))


def straight_through_sign(codes):
    """sign(H) forward (sign(0) = +1, as `binary_codes`), the identity backward.

    The gradient of a loss of the binary codes reaches H unchanged (the straight-through
    estimator of Bengio et al. 2013; Greedy Hash, NeurIPS 2018, trains hashing this way).

    Args:
        codes: (N, q) real-valued codes H.

    Returns:
        (N, q) float32 with entries in {-1, +1}.
    """
    codes = tf.cast(codes, tf.float32)
    signs = tf.cast(binary_codes(codes), tf.float32)
    return codes + tf.stop_gradient(signs - codes)


def binary_aware_retrieval_loss(image_codes, text_codes, labels, margin,
                                similarity_kind="binary", binary_share=0.0):
    """Eq. 2 with a share of it on the binary codes (not in the paper):

        L_ret = (1 - a) L_ret(H^I, H^T) + a L_ret(sign(H^I), sign(H^T)),   a = binary_share

    with `straight_through_sign`. Retrieval ranks sign(H) by Hamming distance, which for
    +-1 codes is a monotone function of their Euclidean distance (||b - b'||^2 = 4 Hamming),
    so the second term trains the ranking that retrieval uses; its gradient reaches only the
    bits on which two codes differ. a = 0 is `retrieval_loss` exactly.

    Args:
        image_codes, text_codes, labels, margin, similarity_kind: as `retrieval_loss`.
        binary_share: a in [0, 1].

    Returns:
        Dict as `retrieval_loss`'s.
    """
    real = retrieval_loss(image_codes, text_codes, labels, margin, similarity_kind)
    if not binary_share:
        return real
    binary = retrieval_loss(straight_through_sign(image_codes), straight_through_sign(text_codes),
                            labels, margin, similarity_kind)
    return {name: (1.0 - binary_share) * real[name] + binary_share * binary[name]
            for name in real}


def binary_codes(codes):
    """B = sign(H) as +-1 int8; sign(0) is taken as +1 so every bit is defined.

    Args:
        codes: (N, q) real-valued codes.

    Returns:
        (N, q) int8 with entries in {-1, +1}.
    """
    return tf.where(codes >= 0, tf.ones_like(codes, tf.int8), -tf.ones_like(codes, tf.int8))


def log_one_plus_exp(x):
    """log(1 + e^x) without overflow: max(x, 0) + log(1 + e^-|x|)."""
    return tf.nn.relu(x) + tf.math.log1p(tf.exp(-tf.abs(x)))


def dcmh_loss(image_codes, text_codes, labels, quantization_weight=1.0, balance_weight=1.0):
    """The DCMH-style baseline objective (Jiang & Li, "Deep Cross-Modal Hashing", CVPR 2017).

    DCMH's objective J (section "Model formulation" of the paper), with the batch in place of
    the whole training set: Theta_ij = 0.5 * <F_i, G_j> (F image codes, G text codes, both
    (B, q)), binary S_ij, B = sign(F + G) (DCMH's closed-form update of B), gamma =
    quantization_weight, eta = balance_weight:

        (Eq. D1) nll          = -sum_ij [ S_ij * Theta_ij - log(1 + e^Theta_ij) ] / B
        (Eq. D2) quantization = ( ||B - F||_F^2 + ||B - G||_F^2 ) / B
        (Eq. D3) balance      = ( ||F^T 1||^2 + ||G^T 1||^2 ) / B

    J is a sum, not a mean: the likelihood sums over B^2 pairs, the quantization over B * q
    entries and the balance is the squared sum of B codes. The common 1/B keeps the value
    per batch item; it does not change the weights of the terms relative to each other, which
    are DCMH's (averaging each term separately, as an earlier version did, made the likelihood
    about B / q times too weak against the quantization pull and q times too weak against the
    balance, and the codes collapsed to one constant code).

    Returns:
        Dict of scalar float32: "nll", "quantization", "balance", and "total" =
        nll + quantization_weight * quantization + balance_weight * balance.
    """
    f = tf.cast(image_codes, tf.float32)
    g = tf.cast(text_codes, tf.float32)
    batch = tf.cast(tf.shape(f)[0], tf.float32)
    similarity = label_similarity(labels, labels, "binary")
    theta = 0.5 * tf.matmul(f, g, transpose_b=True)
    nll = tf.reduce_sum(log_one_plus_exp(theta) - similarity * theta) / batch
    # B is a target, not a path for gradients (DCMH solves it in closed form per step).
    binary = tf.stop_gradient(tf.sign(f + g) + tf.cast(tf.equal(f + g, 0.0), tf.float32))
    quantization = tf.reduce_sum(tf.square(binary - f) + tf.square(binary - g)) / batch
    balance = (tf.reduce_sum(tf.square(tf.reduce_sum(f, 0)))
               + tf.reduce_sum(tf.square(tf.reduce_sum(g, 0)))) / batch
    terms = {"nll": nll, "quantization": quantization, "balance": balance}
    terms["total"] = nll + quantization_weight * quantization + balance_weight * balance
    return terms
