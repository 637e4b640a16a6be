"""DAAH as one Keras model: two players, one minimax train step (design.md, "Minimax")."""

import keras
import tensorflow as tf

from daah_tf import losses

UPDATE_MODES = ("alternating", "simultaneous")
LOSSES = ("daah", "dcmh")
NONFINITE_POLICIES = ("stop", "skip_batch")
ATTENTION_GRADIENTS = ("unattended", "both")
ATTENTION_OBJECTIVES = ("adversarial_retrieval", "adversarial")
RETRIEVAL_VIEWS = ("attended", "whole", "residual", "gated")

# Order of the metrics in the progress bar and in TensorBoard.
LOSS_TERMS = (
    "loss",
    "retrieval_loss",
    "adversarial_loss",
    "attention_objective",
    "ret_t2i",
    "ret_i2t",
    "ret_i2i",
    "ret_t2t",
    "adv_t2i",
    "adv_i2t",
    "dcmh_nll",
    "dcmh_quantization",
    "dcmh_balance",
)
STATISTICS = (
    "nonfinite_batches",
    "gradient_norm_hash",
    "gradient_norm_attention",
    "attended_fraction_image",
    "attended_fraction_text",
    "bit_balance_image",
    "bit_balance_text",
)


def _bit_balance(codes):
    """Mean over bits of |mean over the batch of sign(H)|: 0 when every bit splits the batch
    in half, 1 when every bit is constant. codes: (B, q) -> scalar float32."""
    signs = tf.cast(losses.binary_codes(codes), tf.float32)
    return tf.reduce_mean(tf.abs(tf.reduce_mean(signs, axis=0)))


def _build_once(layer, input_shape):
    # A sublayer may come built (e.g. the factory builds the encoder to learn its output shape).
    if not layer.built:
        layer.build(input_shape)


@keras.saving.register_keras_serializable(package="daah_tf")
class DAAH(keras.Model):
    """Attention-aware Deep Adversarial Hashing for image <-> text retrieval.

    The hashing player (encoders E and hash heads D) minimises F = L_ret + L_adv with the
    attention fixed; the attention player (G) maximises L_adv with E and D fixed (design.md,
    Eq. 2-4). Codes for retrieval are the attended codes H = D(Z * f); sign(H) is the binary code.

    Args:
        image_encoder: E^I, e.g. `ImageEncoder`; (B, ...) images -> (B, H, W, C) or (B, d).
        text_encoder: E^T, e.g. `TextEncoder`; (B, V) -> (B, d).
        image_attention: G^I (`SpatialAttention` or `VectorAttention`, matching E^I's output),
            or None for the no-attention ablation (codes from the whole features, no L_adv).
        text_attention: G^T, or None (as above).
        image_head: D^I, e.g. `ImageHashHead`.
        text_head: D^T, e.g. `TextHashHead`.
        margin: eps of the triplet ranking loss.
        similarity: "binary", "count" or "cosine" (see `losses.label_similarity`).
        update: "alternating" (the paper: attention pass 2 runs after pass 1's update) or
            "simultaneous" (one forward pass, both players' gradients from it).
        adversarial: if False, drop L_adv and never train the attention (ablation).
        loss: "daah" (Eq. 1-4) or "dcmh", the DCMH-style baseline objective
            (`losses.dcmh_loss`; no attention).
        attention_objective: what the attention player maximises: "adversarial_retrieval"
            (default) L_adv - L_ret, i.e. hide similarity from the unattended part while
            keeping it in the attended retrieval codes; "adversarial" L_adv alone (the paper's
            game; measured worse, see the README's table of deviations).
        dcmh_weights: (quantization, balance) weights of the DCMH objective; DCMH's own are
            (1, 1), with which our tanh heads saturate and the text codes collapse (README).
        attention_gradient: which codes carry the attention player's gradient of L_adv:
            "unattended" (default) the unattended database codes H^ only, the attended query
            codes H held constant; "both" the literal reading of design.md, where the player
            may also raise L_adv by spoiling the attended codes (on the synthetic data it does,
            and retrieval mAP falls; see the README).
        retrieval_view: what the retrieval codes H read: "attended" Z * f (the paper's, the
            default here so that older saved models load), "gated" Z * f + sigmoid(g)(1 - Z) * f
            with one scalar g per modality learned by the hashing player (the command line's
            default, see the README's Results), "whole" f, or "residual" (1 + Z) * f. The
            unattended codes of L_adv always read (1 - Z) * f.
        adversarial_weight: the hashing player's weight on L_adv in F = L_ret + w L_adv (the
            paper's: 1).
        **kwargs: standard Model arguments.

    Inputs: a dict {"image": (B, ...), "text": (B, V)}; `fit` takes (inputs, labels) with
    labels (B, L) multi-hot.

    Reference: Zhang, Lai, Feng, "Attention-aware Deep Adversarial Hashing for Cross-Modal
    Retrieval", ECCV 2018, pp. 591-606 (arXiv 1711.09347).
    """

    def __init__(
        self,
        image_encoder,
        text_encoder,
        image_attention,
        text_attention,
        image_head,
        text_head,
        margin=1.0,
        similarity="binary",
        update="alternating",
        adversarial=True,
        attention_gradient="unattended",
        loss="daah",
        dcmh_weights=(1.0, 1.0),
        attention_objective="adversarial_retrieval",
        retrieval_view="attended",
        adversarial_weight=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if retrieval_view not in RETRIEVAL_VIEWS:
            raise ValueError(f"retrieval_view must be one of {RETRIEVAL_VIEWS}, "
                             f"got {retrieval_view!r}")
        self.retrieval_view = retrieval_view
        self.adversarial_weight = float(adversarial_weight)
        if attention_objective not in ATTENTION_OBJECTIVES:
            raise ValueError(f"attention_objective must be one of {ATTENTION_OBJECTIVES}, "
                             f"got {attention_objective!r}")
        self.attention_objective_kind = attention_objective
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss == "dcmh" and image_attention is not None:
            raise ValueError("the DCMH baseline has no attention: use attention none with it")
        if attention_gradient not in ATTENTION_GRADIENTS:
            raise ValueError(
                f"attention_gradient must be one of {ATTENTION_GRADIENTS}, "
                f"got {attention_gradient!r}"
            )
        if update not in UPDATE_MODES:
            raise ValueError(f"update must be one of {UPDATE_MODES}, got {update!r}")
        if similarity not in losses.SIMILARITY_KINDS:
            raise ValueError(
                f"similarity must be one of {losses.SIMILARITY_KINDS}, got {similarity!r}"
            )
        if (image_attention is None) != (text_attention is None):
            raise ValueError("give both attention modules or neither")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_attention = image_attention
        self.text_attention = text_attention
        self.image_head = image_head
        self.text_head = text_head
        self.margin = float(margin)
        self.similarity = similarity
        self.update = update
        self.adversarial = bool(adversarial) and image_attention is not None
        self.attention_gradient = attention_gradient
        self.loss_kind = loss
        self.dcmh_weights = tuple(float(w) for w in dcmh_weights)
        self.hash_optimizer = None
        self.attention_optimizer = None
        self.on_nonfinite = "stop"
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in LOSS_TERMS + STATISTICS
        }
        self.trackers["nonfinite_batches"] = keras.metrics.Sum(name="nonfinite_batches")

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
        if self.retrieval_view == "gated" and self.image_attention is not None:
            # How much of the unattended features the retrieval codes also read, sigmoid(g),
            # one per modality; the hashing player's variables (it learns what hiding costs).
            self.unattended_gates = {
                modality: self.add_weight(shape=(), initializer="zeros",
                                          name=f"{modality}_unattended_gate")
                for modality in ("image", "text")}
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
        """The hashing player's variables: encoders and hash heads."""
        return (
            self.image_encoder.trainable_variables
            + self.text_encoder.trainable_variables
            + self.image_head.trainable_variables
            + self.text_head.trainable_variables
            + list(getattr(self, "unattended_gates", {}).values())
        )

    @property
    def attention_variables(self):
        """The attention player's variables (empty without attention)."""
        if self.image_attention is None:
            return []
        return self.image_attention.trainable_variables + self.text_attention.trainable_variables

    # --------------------------------------------------------------------------------- compile
    def compile(
        self,
        hash_optimizer="adam",
        attention_optimizer="adam",
        jit_compile="auto",
        steps_per_execution=1,
        run_eagerly=False,
        on_nonfinite="stop",
    ):
        """Sets the two players' optimizers (and the usual execution options).

        With the "mixed_float16" policy both optimizers are wrapped in a LossScaleOptimizer:
        each player's loss is scaled by its own optimizer before its gradients are taken.

        on_nonfinite: a batch whose loss or gradients are NaN or Inf is never applied; it is
            counted in the `nonfinite_batches` metric. "stop" also lets the non-finite loss
            terms show in the step's metrics (so a callback can name them and stop);
            "skip_batch" keeps the metrics clean and trains on.
        """
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}"
            )
        self.on_nonfinite = on_nonfinite
        # No Keras-level optimizer: fit would build it over *all* variables, mixing players.
        super().compile(
            optimizer=None,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            run_eagerly=run_eagerly,
        )
        players = []
        for name, optimizer in (
            ("hash_optimizer", hash_optimizer),
            ("attention_optimizer", attention_optimizer),
        ):
            optimizer = keras.optimizers.get(optimizer)
            if self.dtype_policy.name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer
            ):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=name)
            players.append(optimizer)
        self.hash_optimizer, self.attention_optimizer = players
        if self.built:
            self._build_optimizers()

    def _build_optimizers(self):
        # Both are built up front, in a fixed variable order, so that a checkpoint or a .keras
        # file always holds (and restores) both players' slots, even before the first step.
        self.hash_optimizer.build(self.hash_variables)
        self.attention_optimizer.build(self.attention_variables)

    def get_compile_config(self):
        if self.hash_optimizer is None:
            return None
        return {
            "hash_optimizer": keras.optimizers.serialize(self.hash_optimizer),
            "attention_optimizer": keras.optimizers.serialize(self.attention_optimizer),
            "jit_compile": bool(self.jit_compile),
            "on_nonfinite": self.on_nonfinite,
        }

    def compile_from_config(self, config):
        self.compile(
            hash_optimizer=keras.optimizers.deserialize(config["hash_optimizer"]),
            attention_optimizer=keras.optimizers.deserialize(config["attention_optimizer"]),
            jit_compile=config.get("jit_compile", False),
            on_nonfinite=config.get("on_nonfinite", "stop"),
        )

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
        if self.retrieval_view == "gated":
            gate = tf.cast(tf.sigmoid(self.unattended_gates[modality]), features.dtype)
            return attended + gate * (features - attended)
        if self.retrieval_view == "whole":
            # Attention as an adversarial eraser: the retrieval codes read every feature,
            # the mask only decides what the unattended view (L_adv) loses.
            return features
        if self.retrieval_view == "residual":
            # Residual attention, (1 + Z) * f: attended features are emphasised, none is lost.
            return features + attended
        return attended

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

    # ---------------------------------------------------------------------------------- losses
    def compute_losses(self, outputs, labels):
        """Every loss term of both players from the outputs of `_attend_and_hash`.

        Returns a dict of scalar float32: "loss" (F = L_ret + L_adv, the hashing player's
        objective), "retrieval_loss", "adversarial_loss", and the terms "ret_*", "adv_*".
        """
        if self.loss_kind == "dcmh":
            dcmh = losses.dcmh_loss(outputs["image_codes"], outputs["text_codes"], labels,
                                    *self.dcmh_weights)
            terms = {f"dcmh_{k}": v for k, v in dcmh.items() if k != "total"}
            terms["loss"] = dcmh["total"]
            return terms
        retrieval = losses.retrieval_loss(
            outputs["image_codes"], outputs["text_codes"], labels, self.margin, self.similarity
        )
        terms = {f"ret_{k}": v for k, v in retrieval.items() if k != "total"}
        terms["retrieval_loss"] = retrieval["total"]
        if self.image_attention is not None:
            adversarial = self._adversarial_loss(outputs, labels)
            terms.update({f"adv_{k}": v for k, v in adversarial.items() if k != "total"})
            terms["adversarial_loss"] = adversarial["total"]
        hash_loss = terms["retrieval_loss"]
        if self.adversarial:
            hash_loss = hash_loss + self.adversarial_weight * terms["adversarial_loss"]
        terms["loss"] = hash_loss
        return terms

    def _adversarial_loss(self, outputs, labels, attention_player=False):
        """Eq. 3 on the outputs. For the attention player with attention_gradient="unattended",
        the attended query codes are held constant, so the player can raise L_adv only by
        hiding similarity from the unattended codes, not by spoiling the retrieval codes."""
        image_codes, text_codes = outputs["image_codes"], outputs["text_codes"]
        if attention_player and self.attention_gradient == "unattended":
            image_codes, text_codes = tf.stop_gradient(image_codes), tf.stop_gradient(text_codes)
        return losses.adversarial_loss(
            image_codes,
            text_codes,
            outputs["image_unattended_codes"],
            outputs["text_unattended_codes"],
            labels,
            self.margin,
            self.similarity,
        )

    def _attention_objective(self, outputs, labels):
        """The attention player's objective (maximised), a scalar float32: Eq. 3's L_adv, minus
        Eq. 2's L_ret over the attended codes with attention_objective="adversarial_retrieval"
        (the attention then answers for the retrieval codes it feeds, instead of only for
        what it hides)."""
        objective = self._adversarial_loss(outputs, labels, True)["total"]
        if self.attention_objective_kind == "adversarial_retrieval":
            objective = objective - losses.retrieval_loss(
                outputs["image_codes"], outputs["text_codes"], labels, self.margin,
                self.similarity)["total"]
        return objective

    # ------------------------------------------------------------------------------ train step
    def _scaled(self, optimizer, loss):
        """The loss each player differentiates; must run inside its tape.

        Each replica's gradients are summed across replicas by optimizer.apply, so dividing by
        the replica count turns that sum into the mean of the per-replica objectives; the
        optimizer then applies its float16 loss scale (a no-op otherwise).
        """
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return optimizer.scale_loss(loss / tf.cast(replicas, loss.dtype))

    def _apply(self, optimizer, tape, scaled_loss, variables, loss):
        """Applies one player's gradients unless its loss or gradients are not finite.

        Returns a bool scalar: whether the update was applied. A refused update leaves the
        player's weights AND its optimizer's state (moments, iteration count) as they were,
        under any tf.distribute strategy too. Under a LossScaleOptimizer (float16) non-finite
        gradients are part of finding the loss scale, and that optimizer already skips them, so
        only the loss is checked here.
        """
        gradients = tape.gradient(scaled_loss, variables)
        # Per-player gradient norm (of the scaled loss) for TensorBoard: which player moves.
        player = "hash" if optimizer is self.hash_optimizer else "attention"
        self.trackers[f"gradient_norm_{player}"].update_state(
            tf.linalg.global_norm([g for g in gradients if g is not None]))
        finite = tf.reduce_all(tf.math.is_finite(loss))
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            for gradient in gradients:
                if gradient is not None:
                    finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(gradient)))

        def update():
            optimizer.apply(gradients, variables)
            return tf.constant(True)

        if not tf.distribute.has_strategy():
            return tf.cond(finite, update, lambda: tf.constant(False))
        # Every replica must take the same branch (the update all-reduces the gradients; a
        # replica that skipped it would leave the others waiting), so the verdict is global.
        context = tf.distribute.get_replica_context()
        refusals = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      1.0 - tf.cast(finite, tf.float32))
        finite = tf.equal(refusals, 0.0)
        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            return tf.cond(finite, update, lambda: tf.constant(False))
        # Otherwise optimizer.apply is a cross-replica merge, which cannot sit inside a tf.cond
        # taken in replica context; take the tf.cond in the cross-replica context instead and
        # run the update for each replica from there (as keras' LossScaleOptimizer does).

        def merge(distribution, finite, gradients):
            finite = distribution.experimental_local_results(finite)[0]

            def update_each_replica():
                distribution.extended.call_for_each_replica(
                    optimizer.apply, args=(gradients, variables))
                return tf.constant(True)

            return tf.cond(finite, update_each_replica, lambda: tf.constant(False))

        context.merge_call(merge, args=(finite, gradients))
        return finite

    def _global_batch(self, outputs, labels):
        """Under a distribution strategy, the codes and labels of every replica's batch.

        The triplet loss compares items across the whole batch; gathering (differentiably)
        lets each replica compute the loss of the global batch, so a distributed step equals
        the single-device step at the same global batch (with `_scaled`'s 1/replicas).
        """
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return outputs, labels
        devices = tf.distribute.get_strategy().extended.worker_devices

        def gather(value):
            if not value.device and len(devices) == 1:
                # all_gather sends each tensor to its own device; under
                # MultiWorkerMirroredStrategy (one device per worker) the step is traced
                # without a device scope, and a tensor without a device fails there
                # ("destinations can not be empty").
                with tf.device(devices[0]):
                    value = tf.identity(value)
            return context.all_gather(value, axis=0)

        gathered = {name: gather(value) if name.endswith("codes") else value
                    for name, value in outputs.items()}
        return gathered, gather(tf.cast(labels, tf.float32))

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
            batch_outputs, batch_labels = self._global_batch(outputs, labels)
            terms = self.compute_losses(batch_outputs, batch_labels)
            hash_loss = self._scaled(self.hash_optimizer, terms["loss"])
            if simultaneous:
                attention_objective = self._attention_objective(batch_outputs, batch_labels)
                attention_loss = self._scaled(self.attention_optimizer, -attention_objective)
        # Pass 1: the hashing player minimises F = L_ret + L_adv. The attention variables are
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
        """Pass 2: the attention player maximises L_adv with E and D fixed.

        Reuses pass 1's encoder features (stop_gradient) instead of running the backbone
        again; only the attention and the (updated) hash heads run forward.
        Returns (the attention objective as seen by this pass, scalar float32; whether it was
        applied).
        """
        image_features = tf.stop_gradient(image_features)
        text_features = tf.stop_gradient(text_features)
        with tf.GradientTape() as tape:
            outputs = self._attend_and_hash(image_features, text_features, training=True)
            outputs, labels = self._global_batch(outputs, labels)
            objective = self._attention_objective(outputs, labels)
            # Gradient ascent on the attention objective.
            loss = self._scaled(self.attention_optimizer, -objective)
        applied = self._apply(self.attention_optimizer, tape, loss, self.attention_variables,
                              objective)
        return objective, applied

    def test_step(self, data):
        inputs, labels = data[0], data[1]
        outputs = self(inputs, training=False)
        terms = self.compute_losses(*self._global_batch(outputs, labels))
        if self.adversarial:
            terms["attention_objective"] = terms["adversarial_loss"]
        self._track(terms, outputs, tf.constant(True))
        return self._results()

    def _track(self, terms, outputs, applied):
        """Updates the metrics; a skipped batch counts in nonfinite_batches and, with
        on_nonfinite="skip_batch", leaves the loss metrics untouched."""
        # A Sum metric adds up its replicas' states: each replica counts its share of the batch.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.trackers["nonfinite_batches"].update_state(
            (1.0 - tf.cast(applied, tf.float32)) / replicas)
        weight = 1.0 if self.on_nonfinite == "stop" else tf.cast(applied, tf.float32)
        for name, value in terms.items():
            if self.on_nonfinite == "skip_batch":
                value = tf.where(applied, value, tf.zeros_like(value))  # NaN * 0 is NaN
            self.trackers[name].update_state(value, sample_weight=weight)
        for modality in ("image", "text"):
            codes = outputs[f"{modality}_codes"]
            self.trackers[f"bit_balance_{modality}"].update_state(_bit_balance(codes))
            if f"{modality}_mask" in outputs:
                fraction = tf.reduce_mean(tf.cast(outputs[f"{modality}_mask"], tf.float32))
                self.trackers[f"attended_fraction_{modality}"].update_state(fraction)

    def _results(self):
        # Only the trackers this configuration feeds (the ablations have fewer terms).
        results = {
            name: tracker.result()
            for name, tracker in self.trackers.items()
            if name in self._reported_metrics
        }
        strategy = tf.distribute.get_strategy()
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            # With several workers Keras reduces the step's outputs with
            # strategy.reduce(MEAN, axis=0), which needs an axis: give each scalar one.
            results = {name: tf.reshape(value, (1,)) for name, value in results.items()}
        return results

    @property
    def _reported_metrics(self):
        if self.loss_kind == "dcmh":
            names = ["loss", "dcmh_nll", "dcmh_quantization", "dcmh_balance"]
        else:
            names = ["loss", "retrieval_loss", "ret_t2i", "ret_i2t", "ret_i2i", "ret_t2t"]
        if self.image_attention is not None:
            names += ["adversarial_loss", "adv_t2i", "adv_i2t"]
            names += ["attended_fraction_image", "attended_fraction_text"]
        if self.adversarial:
            names += ["attention_objective", "gradient_norm_attention"]
        names.append("gradient_norm_hash")
        return set(names + ["bit_balance_image", "bit_balance_text", "nonfinite_batches"])

    @property
    def metrics(self):
        return [self.trackers[name] for name in self.trackers if name in self._reported_metrics]

    # ---------------------------------------------------------------------------- serialization
    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            image_encoder=serialize(self.image_encoder),
            text_encoder=serialize(self.text_encoder),
            image_attention=serialize(self.image_attention),
            text_attention=serialize(self.text_attention),
            image_head=serialize(self.image_head),
            text_head=serialize(self.text_head),
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
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in (
            "image_encoder",
            "text_encoder",
            "image_attention",
            "text_attention",
            "image_head",
            "text_head",
        ):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
