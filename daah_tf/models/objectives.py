"""What the two players optimise: one class per `--loss` (docs/design.md, "Losses" and
"Minimax").

`DAAH.train_step` asks its objective for the hashing player's loss terms and, with attention,
for the attention player's objective; the step itself does not know which losses it trains on.

Every method takes `outputs`, the dict of `DAAH._attend_and_hash` (optionally gathered across
replicas by `global_batch`):
    "image_codes", "text_codes": (B, q) attended codes H;
    "image_unattended_codes", "text_unattended_codes": (B, q) codes H^ of the unattended
        features (present with attention only);
and `labels`, (B, L) multi-hot; every loss term is a scalar float32 tensor.
"""

import tensorflow as tf

from daah_tf import losses


class DAAHObjective:
    """Eq. 1-4: the hashing player minimises F = L_ret + w * L_adv (+ lambda_q * Q with a
    quantization weight, `losses.quantization_loss`); the attention player
    maximises L_adv - L_ret (attention_objective="adversarial_retrieval") or L_adv
    ("adversarial", the paper's game).

    Args:
        margin: eps of the triplet ranking loss.
        similarity: "binary", "count" or "cosine" (see `losses.label_similarity`).
        attention: whether the model has attention (unattended codes, hence an L_adv).
        adversarial: whether L_adv enters F and the attention player plays.
        adversarial_weight: w in F = L_ret + w * L_adv.
        attention_gradient: "unattended" (the attention player's gradient of L_adv reaches the
            unattended codes only; the attended query codes are held constant), "both" (the
            paper's: the attended query codes too) or "unattended_and_text" (the attended
            text query codes too, the attended image query codes held constant).
        attention_objective: "adversarial_retrieval" or "adversarial" (above).
        quantization_weight: lambda_q, the hashing player's weight on Q (0: the paper's F,
            and no "quantization_loss" term). Every method of `--loss=daah` has it, the
            ablations included: it is part of the hashing player, not of the game.
        binary_ranking_share: a in [0, 1]; L_ret = (1 - a) L_ret(H) + a L_ret(sign(H)) with a
            straight-through sign (`losses.binary_aware_retrieval_loss`), for both players'
            L_ret (0: the paper's, L_ret on H only). Every method has it, like Q.
        hash_adversarial_terms: the terms of L_adv in the hashing player's F: "both" (Eq. 4,
            F_{T->I^} + F_{I->T^}), "t2i" (F_{T->I^}: the text queries against the unattended
            image codes) or "i2t" (F_{I->T^}). The attention player always maximises both.
        center_weight: lambda_c, the hashing player's weight on C, the cross-entropy against
            the labels' hash centres (`losses.center_loss`; 0: the paper's F, and no
            "center_loss" term). Every method has it, like Q.
        attention_area_weight: beta, the attention player's cost on A, the attended share of
            the image feature map (`losses.attention_area`; 0: the paper's game). Only image
            masks over (H, W) positions pay it: a vector's dimensions are not places.
    """

    def __init__(self, margin, similarity, attention, adversarial, adversarial_weight,
                 attention_gradient, attention_objective, quantization_weight=0.0,
                 binary_ranking_share=0.0, hash_adversarial_terms="both", center_weight=0.0,
                 attention_area_weight=0.0):
        self.margin = margin
        self.similarity = similarity
        self.attention = attention
        self.adversarial = adversarial
        self.adversarial_weight = adversarial_weight
        self.attention_gradient = attention_gradient
        self.attention_objective_kind = attention_objective
        self.quantization_weight = float(quantization_weight)
        self.binary_ranking_share = float(binary_ranking_share)
        self.hash_adversarial_terms = hash_adversarial_terms
        self.center_weight = float(center_weight)
        self.attention_area_weight = float(attention_area_weight)

    def retrieval_terms(self, outputs, labels):
        """Eq. 2, L_ret over the attended codes (with its binary share, if any): {"t2i", "i2t",
        "i2i", "t2t", "total"} of scalar float32."""
        return losses.binary_aware_retrieval_loss(
            outputs["image_codes"], outputs["text_codes"], labels, self.margin,
            self.similarity, self.binary_ranking_share)

    @property
    def terms(self):
        """Names of the terms `hash_terms` returns."""
        names = ["loss", "retrieval_loss", "ret_t2i", "ret_i2t", "ret_i2i", "ret_t2t"]
        if self.attention:
            names += ["adversarial_loss", "adv_t2i", "adv_i2t"]
        if self.quantization_weight:
            names.append("quantization_loss")
        if self.center_weight:
            names.append("center_loss")
        return names

    def hash_terms(self, outputs, labels):
        """The hashing player's terms: "loss" (F, what it minimises), "retrieval_loss" (Eq. 2)
        with its "ret_t2i", "ret_i2t", "ret_i2i", "ret_t2t", and with attention
        "adversarial_loss" (Eq. 3) with its "adv_t2i", "adv_i2t", and with a quantization
        weight "quantization_loss" (Q), with a centre weight "center_loss" (C). A dict of
        scalar float32."""
        retrieval = self.retrieval_terms(outputs, labels)
        terms = {f"ret_{k}": v for k, v in retrieval.items() if k != "total"}
        terms["retrieval_loss"] = retrieval["total"]
        if self.attention:
            adversarial = self.adversarial_terms(outputs, labels)
            terms.update({f"adv_{k}": v for k, v in adversarial.items() if k != "total"})
            terms["adversarial_loss"] = adversarial["total"]
        hash_loss = terms["retrieval_loss"]
        if self.quantization_weight:
            terms["quantization_loss"] = losses.quantization_loss(outputs["image_codes"],
                                                                  outputs["text_codes"])
            hash_loss = hash_loss + self.quantization_weight * terms["quantization_loss"]
        if self.center_weight:
            # Fixed per (labels, bits): a constant of the traced step, never a variable.
            centers = losses.hash_centers(labels.shape[-1], outputs["image_codes"].shape[-1])
            terms["center_loss"] = losses.center_loss(outputs["image_codes"],
                                                      outputs["text_codes"], labels, centers)
            hash_loss = hash_loss + self.center_weight * terms["center_loss"]
        if self.adversarial:
            hash_loss = hash_loss + self.adversarial_weight * self._hash_adversarial(terms)
        terms["loss"] = hash_loss
        return terms

    def _hash_adversarial(self, terms):
        """The part of L_adv (scalar float32) the hashing player minimises, from `hash_terms`'
        terms."""
        if self.hash_adversarial_terms == "both":
            return terms["adversarial_loss"]
        return terms[f"adv_{self.hash_adversarial_terms}"]

    def adversarial_terms(self, outputs, labels, attention_player=False):
        """Eq. 3, L_adv: {"t2i", "i2t", "total"} of scalar float32.

        For the attention player with attention_gradient="unattended" the attended query codes
        are held constant, so the player can raise L_adv only by hiding similarity from the
        unattended codes, not by spoiling the retrieval codes; "unattended_and_text" holds only
        the attended image codes constant (the text mask also answers for the text query codes
        of F_{T->I^}).
        """
        image_codes, text_codes = outputs["image_codes"], outputs["text_codes"]
        if attention_player and self.attention_gradient in ("unattended", "unattended_and_text"):
            image_codes = tf.stop_gradient(image_codes)
        if attention_player and self.attention_gradient == "unattended":
            text_codes = tf.stop_gradient(text_codes)
        return losses.adversarial_loss(
            image_codes,
            text_codes,
            outputs["image_unattended_codes"],
            outputs["text_unattended_codes"],
            labels,
            self.margin,
            self.similarity,
        )

    def attention_objective(self, outputs, labels, adversarial=None):
        """The attention player's objective (maximised), a scalar float32: Eq. 3's L_adv, minus
        Eq. 2's L_ret over the attended codes with attention_objective="adversarial_retrieval"
        (the attention then answers for the retrieval codes it feeds, instead of only for what
        it hides), minus beta A with an area weight and an image feature map (the smallest
        mask that hides the evidence, not every position near it).

        adversarial: the attention player's `adversarial_terms` if already computed.
        """
        if adversarial is None:
            adversarial = self.adversarial_terms(outputs, labels, attention_player=True)
        objective = adversarial["total"]
        if self.attention_objective_kind == "adversarial_retrieval":
            objective = objective - self.retrieval_terms(outputs, labels)["total"]
        image_mask = outputs["image_mask"]
        if self.attention_area_weight and image_mask.shape.rank == 3:
            objective = objective - self.attention_area_weight * losses.attention_area(image_mask)
        return objective


class DCMHObjective:
    """The DCMH-style baseline (`losses.dcmh_loss`): the hashing player alone, no attention.

    Args:
        weights: (quantization, balance) weights of the DCMH objective.
    """

    terms = ["loss", "dcmh_nll", "dcmh_quantization", "dcmh_balance"]

    def __init__(self, weights):
        self.weights = tuple(weights)

    def hash_terms(self, outputs, labels):
        """"loss" (DCMH's J) and its terms "dcmh_nll", "dcmh_quantization", "dcmh_balance"."""
        dcmh = losses.dcmh_loss(outputs["image_codes"], outputs["text_codes"], labels,
                                *self.weights)
        terms = {f"dcmh_{k}": v for k, v in dcmh.items() if k != "total"}
        terms["loss"] = dcmh["total"]
        return terms


def build_objective(loss, margin, similarity, attention, adversarial, adversarial_weight,
                    attention_gradient, attention_objective, dcmh_weights,
                    quantization_weight=0.0, binary_ranking_share=0.0,
                    hash_adversarial_terms="both", center_weight=0.0,
                    attention_area_weight=0.0):
    """The objective of `--loss` ("daah" or "dcmh"); the other arguments as `DAAHObjective`'s
    and `DCMHObjective`'s (DCMH has its own quantization term and weight)."""
    if loss == "dcmh":
        return DCMHObjective(dcmh_weights)
    return DAAHObjective(margin, similarity, attention, adversarial, adversarial_weight,
                         attention_gradient, attention_objective, quantization_weight,
                         binary_ranking_share, hash_adversarial_terms, center_weight,
                         attention_area_weight)
