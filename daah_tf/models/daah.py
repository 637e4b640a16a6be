"""DAAH as one Keras model: two players, one minimax train step (docs/design.md, "Minimax").

What the players optimise is `objectives`; how one player's update is applied (or refused)
is `guarded_update`; the step's metrics are `step_metrics`.

Slightly over 400 lines because this is the Keras Model class itself (its constructor, build,
compile, forward pass, train/test step and serialization), which Keras wants in one class; the
step's parts already live in `guarded_update`, `objectives`, `step_metrics`,
`player_optimizers`, `retrieval_view` and `global_batch`.
"""

import inspect

import keras
import tensorflow as tf

from daah_tf.config import (
    ATTENTION_GRADIENTS,
    ATTENTION_OBJECTIVES,
    HASH_ADVERSARIAL_TERMS,
    LOSSES,
    NONFINITE_POLICIES,
    RETRIEVAL_VIEWS,
    SIMILARITY_KINDS,
    UPDATE_MODES,
)
from daah_tf.models import guarded_update, player_optimizers, progress_bar, step_metrics
from daah_tf.models.global_batch import global_batch
from daah_tf.models.objectives import build_objective
from daah_tf.models.retrieval_view import retrieval_features
from daah_tf.models.step_metrics import LOSS_TERMS, STATISTICS  # noqa: F401 (older home)

# The sublayers, as get_config names them.
_SUBLAYERS = ("image_encoder", "text_encoder", "image_attention", "text_attention",
              "image_head", "text_head")


def _build_once(layer, input_shape):
    # A sublayer may come built (e.g. the factory builds the encoder to learn its output shape).
    if not layer.built:
        layer.build(input_shape)


@keras.saving.register_keras_serializable(package="daah_tf")
class DAAH(keras.Model):
    """Attention-aware Deep Adversarial Hashing for image <-> text retrieval.

    The hashing player (encoders E and hash heads D) minimises F = L_ret + w L_adv with the
    attention fixed; the attention player (G) maximises its objective (L_adv, less L_ret by
    default) with E and D fixed (docs/design.md, "Losses" and "Minimax"). The retrieval codes
    are H = D(Z * f) (or another `retrieval_view`); sign(H) is the binary code.

    Args:
        image_encoder: E^I, e.g. `ImageEncoder`; (B, ...) images -> (B, H, W, C) or (B, d).
        text_encoder: E^T, e.g. `TextEncoder`; (B, V) -> (B, d).
        image_attention: G^I (`SpatialAttention` or `VectorAttention`, matching E^I's output),
            or None for the no-attention ablation (codes from the whole features, no L_adv).
        text_attention: G^T, or None (as above).
        image_head: D^I, e.g. `ImageHashHead`.
        text_head: D^T, e.g. `TextHashHead`.
        margin: eps of the triplet ranking loss.
        similarity: S, "binary", "count" or "cosine" (see `losses.label_similarity`).
        update: "alternating" (the paper: attention pass 2 runs after pass 1's update) or
            "simultaneous" (one forward pass, both players' gradients from it).
        adversarial: if False, drop L_adv and never train the attention (ablation).
        attention_gradient: "unattended" (default), "both" (the literal reading) or
            "unattended_and_text" (the attended text codes too, not the image ones): which codes
            carry the attention player's gradient of L_adv (`objectives.DAAHObjective`).
        loss: "daah" (Eq. 1-4, `objectives.DAAHObjective`) or "dcmh", the DCMH-style baseline
            (`objectives.DCMHObjective`; no attention).
        dcmh_weights: (quantization, balance) weights of the DCMH objective.
        attention_objective: what the attention player maximises: "adversarial_retrieval"
            (default) L_adv - L_ret, or "adversarial" L_adv alone (the paper's game).
        retrieval_view: what the retrieval codes H read: "attended" Z * f (the paper's, the
            default here so that older saved models load), "gated" Z * f + sigmoid(g)(1 - Z) * f
            with one scalar g per modality learned by the hashing player (the command line's
            default), "whole" f, or "residual" (1 + Z) * f. The unattended codes of L_adv
            always read (1 - Z) * f.
        text_retrieval_view: the text codes' view if other than `retrieval_view` (None: the
            same; e.g. "whole": the text codes read every text feature and the text mask only
            shapes L_adv).
        adversarial_weight: w, the hashing player's weight on L_adv (the paper's: 1).
        quantization_weight: lambda_q, the hashing player's weight on the quantization term Q
            (`losses.quantization_loss`; the paper's: 0, no such term).
        binary_ranking_share: a, the share of L_ret computed on sign(H) with a straight-through
            gradient (`objectives.DAAHObjective`; the paper's: 0).
        hash_adversarial_terms: the terms of L_adv in the hashing player's F: "both" (the
            paper's), "t2i" (F_{T->I^} only) or "i2t" (F_{I->T^} only); the attention player
            always plays both (`objectives.DAAHObjective`).
        center_weight: lambda_c, the hashing player's weight on the hash-centre term C
            (`losses.center_loss`; the paper's: 0, no such term).
        attention_area_weight: beta, the attention player's cost on the attended share of the
            image feature map (`losses.attention_area`; the paper's: 0, no such cost).
        **kwargs: standard Model arguments.

    The README's "Deviations from the paper" measures each non-paper default.

    Inputs: a dict {"image": (B, ...), "text": (B, V)}; `fit` takes (inputs, labels) with
    labels (B, L) multi-hot.

    Reference: Zhang, Lai, Feng, "Attention-aware Deep Adversarial Hashing for Cross-Modal
    Retrieval", ECCV 2018, pp. 591-606 (arXiv 1711.09347).
    """

    def __init__(self, image_encoder, text_encoder, image_attention, text_attention, image_head,
                 text_head, margin=1.0, similarity="binary", update="alternating",
                 adversarial=True, attention_gradient="unattended", loss="daah",
                 dcmh_weights=(1.0, 1.0), attention_objective="adversarial_retrieval",
                 retrieval_view="attended", adversarial_weight=1.0, text_retrieval_view=None,
                 quantization_weight=0.0, binary_ranking_share=0.0,
                 hash_adversarial_terms="both", center_weight=0.0, attention_area_weight=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        for name, value, allowed in (
            ("retrieval_view", retrieval_view, RETRIEVAL_VIEWS),
            ("text_retrieval_view", text_retrieval_view, (None, *RETRIEVAL_VIEWS)),
            ("attention_objective", attention_objective, ATTENTION_OBJECTIVES),
            ("hash_adversarial_terms", hash_adversarial_terms, HASH_ADVERSARIAL_TERMS),
            ("loss", loss, LOSSES),
            ("attention_gradient", attention_gradient, ATTENTION_GRADIENTS),
            ("update", update, UPDATE_MODES),
            ("similarity", similarity, SIMILARITY_KINDS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0.0 <= float(binary_ranking_share) <= 1.0:
            raise ValueError(f"binary_ranking_share must be in [0, 1], got {binary_ranking_share}")
        if loss == "dcmh" and image_attention is not None:
            raise ValueError("the DCMH baseline has no attention: use attention none with it")
        if (image_attention is None) != (text_attention is None):
            raise ValueError("give both attention modules or neither")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_attention = image_attention
        self.text_attention = text_attention
        self.image_head = image_head
        self.text_head = text_head
        # The settings, as get_config writes them.
        self.margin = float(margin)
        self.similarity = similarity
        self.update = update
        self.adversarial = bool(adversarial) and image_attention is not None
        self.attention_gradient = attention_gradient
        self.loss_kind = loss
        self.dcmh_weights = tuple(float(w) for w in dcmh_weights)
        self.attention_objective_kind = attention_objective
        self.retrieval_view = retrieval_view
        self.text_retrieval_view = text_retrieval_view
        # What each modality's retrieval codes read (`retrieval_view.retrieval_features`).
        self.views = {"image": retrieval_view, "text": text_retrieval_view or retrieval_view}
        self.adversarial_weight = float(adversarial_weight)
        self.quantization_weight = float(quantization_weight)
        self.binary_ranking_share = float(binary_ranking_share)
        self.hash_adversarial_terms = hash_adversarial_terms
        self.center_weight = float(center_weight)
        self.attention_area_weight = float(attention_area_weight)
        # What the players optimise (a plain object: nothing of it is saved).
        self.objective = build_objective(
            loss, self.margin, similarity, image_attention is not None, self.adversarial,
            self.adversarial_weight, attention_gradient, attention_objective, self.dcmh_weights,
            self.quantization_weight, self.binary_ranking_share, hash_adversarial_terms,
            self.center_weight, self.attention_area_weight)
        self.hash_optimizer = None
        self.attention_optimizer = None
        self.on_nonfinite = "stop"
        self.trackers = step_metrics.make_trackers()

    # ----------------------------------------------------------------------------------- build
    def build(self, input_shape):
        """input_shape: {"image": (B, ...), "text": (B, V)}."""
        image_shape = tuple(input_shape["image"])
        text_shape = tuple(input_shape["text"])
        _build_once(self.image_encoder, image_shape)
        _build_once(self.text_encoder, text_shape)
        image_features = self.image_encoder.compute_output_shape(image_shape)
        text_features = self.text_encoder.compute_output_shape(text_shape)
        if self.image_attention is not None:
            _build_once(self.image_attention, image_features)
            _build_once(self.text_attention, text_features)
        _build_once(self.image_head, image_features)
        _build_once(self.text_head, text_features)
        self._input_shapes = {"image": list(image_shape), "text": list(text_shape)}
        gated = [m for m in ("image", "text") if self.views[m] == "gated"]
        if gated and self.image_attention is not None:
            # How much of the unattended features the retrieval codes also read, sigmoid(g),
            # one per gated modality; the hashing player's variables (it learns what hiding
            # costs).
            self.unattended_gates = {
                modality: self.add_weight(shape=(), initializer="zeros",
                                          name=f"{modality}_unattended_gate")
                for modality in gated}
        self.built = True
        if self.hash_optimizer is not None:
            self._build_optimizers()

    def get_build_config(self):
        return {"input_shape": self._input_shapes} if self.built else {}

    def build_from_config(self, config):
        if config:
            self.build(config["input_shape"])

    @property
    def hash_variables(self):
        """The hashing player's variables: encoders, hash heads (and the `gated` view's gates)."""
        return (self.image_encoder.trainable_variables + self.text_encoder.trainable_variables
                + self.image_head.trainable_variables + self.text_head.trainable_variables
                + list(getattr(self, "unattended_gates", {}).values()))

    @property
    def attention_variables(self):
        """The attention player's variables (empty without attention)."""
        if self.image_attention is None:
            return []
        return self.image_attention.trainable_variables + self.text_attention.trainable_variables

    # --------------------------------------------------------------------------------- compile
    def compile(self, hash_optimizer="adam", attention_optimizer="adam", jit_compile="auto",
                steps_per_execution=1, run_eagerly=False, on_nonfinite="stop"):
        """Sets the two players' optimizers (and the usual execution options).

        With the "mixed_float16" policy both optimizers are wrapped in a LossScaleOptimizer:
        each player's loss is scaled by its own optimizer before its gradients are taken.

        on_nonfinite: a batch whose loss or gradients are NaN or Inf is never applied; it is
            counted in the `nonfinite_batches` metric. "stop" also lets the non-finite loss
            terms show in the step's metrics (so a callback can name them and stop);
            "skip_batch" keeps the metrics clean and trains on.
        """
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, "
                             f"got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        # No Keras-level optimizer: fit would build it over *all* variables, mixing players.
        super().compile(optimizer=None, jit_compile=jit_compile,
                        steps_per_execution=steps_per_execution, run_eagerly=run_eagerly)
        self.hash_optimizer, self.attention_optimizer = player_optimizers.make(
            hash_optimizer, attention_optimizer, self.dtype_policy)
        if self.built:
            self._build_optimizers()

    def _build_optimizers(self):
        # Both are built up front, in a fixed variable order, so that a checkpoint or a .keras
        # file always holds (and restores) both players' slots, even before the first step.
        self.hash_optimizer.build(self.hash_variables)
        self.attention_optimizer.build(self.attention_variables)

    def get_compile_config(self):
        return player_optimizers.compile_config(self)

    def compile_from_config(self, config):
        self.compile(**player_optimizers.compile_arguments(config))

    # --------------------------------------------------------------------------------- forward
    def _attend_and_hash(self, image_features, text_features, training):
        """Attention and hash heads on encoder features.

        Returns a dict: "image_codes", "text_codes" (B, q) attended codes H;
        "image_unattended_codes", "text_unattended_codes" (B, q) codes H^ of the unattended
        features (absent without attention); "image_mask" (B, H, W) or (B, d) and "text_mask"
        (B, d) in {0, 1}.
        """
        if self.image_attention is None:
            return {
                "image_codes": self.image_head(image_features, training=training),
                "text_codes": self.text_head(text_features, training=training),
            }
        outputs = {}
        for modality, attention, head in (
            ("image", self.image_attention, self.image_head),
            ("text", self.text_attention, self.text_head),
        ):
            features = image_features if modality == "image" else text_features
            attended, unattended, mask = attention(features)
            attended = self._retrieval_features(features, attended, modality)
            # One head call over [attended; unattended]: the same D, half the kernel launches.
            both = tf.concat([attended, unattended], axis=0)
            codes, unattended_codes = tf.split(head(both, training=training), 2, axis=0)
            outputs[f"{modality}_codes"] = codes
            outputs[f"{modality}_unattended_codes"] = unattended_codes
            outputs[f"{modality}_mask"] = mask
        return outputs

    def call(self, inputs, training=False):
        """inputs: {"image": ..., "text": ...} -> the dict of `_attend_and_hash`."""
        image_features = self.image_encoder(inputs["image"], training=training)
        text_features = self.text_encoder(inputs["text"], training=training)
        return self._attend_and_hash(image_features, text_features, training)

    def _retrieval_features(self, features, attended, modality):
        """What the retrieval codes read, given the features f and the attended Z * f."""
        gate = getattr(self, "unattended_gates", {}).get(modality)
        return retrieval_features(self.views[modality], features, attended, gate)

    def _encode(self, features, attention, head, training, modality):
        if attention is not None:
            attended, _, _ = attention(features)
            features = self._retrieval_features(features, attended, modality)
        return head(features, training=training)

    def encode_image(self, images, training=False):
        """(B, ...) images (or image features) -> (B, q) float32 attended codes H^I."""
        features = self.image_encoder(images, training=training)
        return self._encode(features, self.image_attention, self.image_head, training, "image")

    def encode_text(self, bag_of_words, training=False):
        """(B, V) bag-of-words -> (B, q) float32 attended codes H^T."""
        features = self.text_encoder(bag_of_words, training=training)
        return self._encode(features, self.text_attention, self.text_head, training, "text")

    def image_mask(self, images):
        """(B, ...) images -> the image attention mask Z (B, H, W) or (B, d), float32 {0,1}."""
        if self.image_attention is None:
            raise ValueError("this model has no attention (the no-attention ablation)")
        return self.image_attention(self.image_encoder(images))[2]

    def text_mask(self, bag_of_words):
        """(B, V) bag-of-words -> the text attention mask Z (B, d), float32 {0,1}."""
        if self.text_attention is None:
            raise ValueError("this model has no attention (the no-attention ablation)")
        return self.text_attention(self.text_encoder(bag_of_words))[2]

    # ---------------------------------------------------------------------------------- losses
    def compute_losses(self, outputs, labels):
        """The hashing player's loss terms (`objectives`) from the outputs of `_attend_and_hash`.

        Returns a dict of scalar float32: "loss" (F = L_ret + w L_adv, the hashing player's
        objective), "retrieval_loss", "adversarial_loss", and the terms "ret_*", "adv_*" (the
        DCMH baseline: "loss" and "dcmh_*").
        """
        return self.objective.hash_terms(outputs, labels)

    def _adversarial_loss(self, outputs, labels, attention_player=False):
        """Eq. 3 on the outputs (`DAAHObjective.adversarial_terms`)."""
        return self.objective.adversarial_terms(outputs, labels, attention_player)

    def _attention_objective(self, outputs, labels):
        """The attention player's objective (maximised), a scalar float32
        (`DAAHObjective.attention_objective`)."""
        adversarial = self._adversarial_loss(outputs, labels, attention_player=True)
        return self.objective.attention_objective(outputs, labels, adversarial)

    # ------------------------------------------------------------------------------ train step
    def train_step(self, data):
        """One minimax step. Each player's update stands alone: pass 1 (the hashing player) is
        applied when its own loss and gradients are finite, pass 2 (the attention player) when
        its own are, whatever the other's were (pass 1 is applied before pass 2's finiteness is
        known, and is not undone). A refused update changes neither that player's weights nor
        its optimizer's state; the batch counts once in `nonfinite_batches` if either was."""
        inputs, labels = data[0], data[1]
        simultaneous = self.update == "simultaneous" and self.adversarial
        with tf.GradientTape(persistent=simultaneous) as tape:
            image_features = self.image_encoder(inputs["image"], training=True)
            text_features = self.text_encoder(inputs["text"], training=True)
            outputs = self._attend_and_hash(image_features, text_features, training=True)
            batch_outputs, batch_labels = global_batch(outputs, labels)
            terms = self.compute_losses(batch_outputs, batch_labels)
            hash_loss = guarded_update.scaled_loss(self.hash_optimizer, terms["loss"])
            if simultaneous:
                attention_objective = self._attention_objective(batch_outputs, batch_labels)
                attention_loss = guarded_update.scaled_loss(self.attention_optimizer,
                                                            -attention_objective)
        # Pass 1: the hashing player minimises F = L_ret + w L_adv. The attention variables are
        # not in its list, so they stay fixed (and the attention reads detached features).
        applied = self._apply(self.hash_optimizer, tape, hash_loss, self.hash_variables,
                              terms["loss"])
        if simultaneous:
            # The attention player's gradient from the same forward pass: no pass 2 forward.
            applied = tf.logical_and(applied, self._apply(
                self.attention_optimizer, tape, attention_loss, self.attention_variables,
                attention_objective))
            terms["attention_objective"] = attention_objective
        elif self.adversarial:
            terms["attention_objective"], attention_applied = self._attention_pass(
                image_features, text_features, labels
            )
            applied = tf.logical_and(applied, attention_applied)
        del tape
        self._track(terms, outputs, applied)
        return self._results()

    def _attention_pass(self, image_features, text_features, labels):
        """Pass 2: the attention player maximises its objective with E and D fixed.

        Reuses pass 1's encoder features (stop_gradient) instead of running the backbone
        again; only the attention and the (updated) hash heads run forward.
        Returns (the attention objective as seen by this pass, scalar float32; whether it was
        applied).
        """
        image_features = tf.stop_gradient(image_features)
        text_features = tf.stop_gradient(text_features)
        with tf.GradientTape() as tape:
            outputs = self._attend_and_hash(image_features, text_features, training=True)
            outputs, labels = global_batch(outputs, labels)
            objective = self._attention_objective(outputs, labels)
            # Gradient ascent on the attention objective.
            loss = guarded_update.scaled_loss(self.attention_optimizer, -objective)
        applied = self._apply(self.attention_optimizer, tape, loss, self.attention_variables,
                              objective)
        return objective, applied

    def _apply(self, optimizer, tape, scaled_loss, variables, loss):
        """One player's update from its tape, unless its loss or gradients are not finite
        (`guarded_update.apply_if_finite`); records the player's gradient norm.

        scaled_loss: what the tape differentiates; loss: the player's unscaled objective.
        Returns a bool scalar: whether the update was applied.
        """
        gradients = tape.gradient(scaled_loss, variables)
        # Per-player gradient norm (of the scaled loss) for TensorBoard: which player moves.
        player = "hash" if optimizer is self.hash_optimizer else "attention"
        self.trackers[f"gradient_norm_{player}"].update_state(
            tf.linalg.global_norm([g for g in gradients if g is not None]))
        return guarded_update.apply_if_finite(optimizer, gradients, variables, loss)

    def test_step(self, data):
        inputs, labels = data[0], data[1]
        outputs = self(inputs, training=False)
        terms = self.compute_losses(*global_batch(outputs, labels))
        if self.adversarial:
            terms["attention_objective"] = terms["adversarial_loss"]
        self._track(terms, outputs, tf.constant(True))
        return self._results()

    # --------------------------------------------------------------------------------- metrics
    def _track(self, terms, outputs, applied):
        step_metrics.track(self.trackers, terms, outputs, applied, self.on_nonfinite)

    def _results(self):
        return step_metrics.results(self.trackers, self._reported_metrics)

    @property
    def _reported_metrics(self):
        return step_metrics.reported(self.objective.terms, self.image_attention is not None,
                                     self.adversarial)

    @property
    def metrics(self):
        return [self.trackers[name] for name in self.trackers if name in self._reported_metrics]

    def fit(self, *args, **kwargs):
        """keras.Model.fit, whose progress bar shows only `progress_bar.WATCHED` (and the val_
        ones); the other callbacks (TensorBoard, History) still get every metric."""
        arguments = inspect.signature(super().fit).bind(*args, **kwargs).arguments
        arguments["callbacks"] = progress_bar.with_progress_bar(
            arguments.get("callbacks"), arguments.get("verbose", "auto"))
        return super().fit(**arguments)

    # ---------------------------------------------------------------------------- serialization
    def get_config(self):
        config = super().get_config()
        config.update({name: keras.saving.serialize_keras_object(getattr(self, name))
                       for name in _SUBLAYERS})
        config.update(
            margin=self.margin,
            similarity=self.similarity,
            update=self.update,
            adversarial=self.adversarial,
            attention_gradient=self.attention_gradient,
            loss=self.loss_kind,
            dcmh_weights=self.dcmh_weights,
            attention_objective=self.attention_objective_kind,
            retrieval_view=self.retrieval_view,
            adversarial_weight=self.adversarial_weight,
        )
        # Written only when set, so that configs of older versions keep their form.
        if self.text_retrieval_view is not None:
            config["text_retrieval_view"] = self.text_retrieval_view
        if self.quantization_weight:
            config["quantization_weight"] = self.quantization_weight
        if self.binary_ranking_share:
            config["binary_ranking_share"] = self.binary_ranking_share
        if self.hash_adversarial_terms != "both":
            config["hash_adversarial_terms"] = self.hash_adversarial_terms
        if self.center_weight:
            config["center_weight"] = self.center_weight
        if self.attention_area_weight:
            config["attention_area_weight"] = self.attention_area_weight
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in _SUBLAYERS:
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)
