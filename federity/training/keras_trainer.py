"""TensorFlow trainer: mini-batch SGD or Adam on the task's objective for a Keras 3 model, deterministic for a
seed (classification, reconstruction, next-token prediction, or a GAN's two alternating steps).

It follows the PyTorch trainer step for step, so a zoo model trains the same way in either framework: the
samples are shuffled each epoch from ``params.seed``, ``weight_decay`` is an L2 term added to the gradient (as
``torch.optim`` does it, not Keras' decoupled decay), and with ``mu > 0`` the loss carries FedProx's proximal
term ``(mu / 2) * ||w - w_start||^2`` (Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith, "Federated Optimization in
Heterogeneous Networks", MLSys 2020). Images arrive channel-first (as :mod:`federity.data` reads them) and are
given to Keras channel-last.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from federity.data import Dataset
from federity.errors import DataError, ProofError
from federity.proofs.policy import ProvedHead
from federity.training import EVALUATION_BATCH, TrainingParams, require_finite_loss
from federity.training.memory import MemoryEstimate, estimate
from federity.weights.keras_adapter import channel_last, import_keras


def _activation_bytes(model: Any, sample: np.ndarray) -> int:
    """Bytes of every layer's output for one ``sample``: a ``keras.Sequential`` runs it layer by layer, counting
    a nested model's own layers (a ``keras.applications`` backbone) on the input it gets; a functional model runs
    it through a probe that outputs every layer; a subclassed model, whose layers have no symbolic outputs,
    counts only its own output."""
    keras = import_keras()
    if isinstance(model, keras.Sequential):
        total, seen = 0, sample
        for layer in model.layers:
            if getattr(layer, "layers", None):
                total += _activation_bytes(layer, np.asarray(seen))
            seen = layer(seen, training=False)
            total += sum(int(np.asarray(out).nbytes) for out in keras.tree.flatten(seen))
        return total
    try:
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        probe = keras.Model(model.inputs, [layer.output for layer in layers])
    except (AttributeError, ValueError, TypeError):
        return int(np.asarray(model(sample, training=False)).nbytes)
    return sum(int(np.asarray(out).nbytes) for out in keras.tree.flatten(probe([sample], training=False)))


def _objective(tf: Any, objective: str, outputs: Any, features: Any, labels: Any) -> tuple[Any, Any, Any]:
    """The batch's summed loss under ``objective`` (:data:`federity.config.Objective`), how many terms it sums,
    and how many of them the model got right (0 for ``reconstruction``), as float32 tensors."""
    if objective == "reconstruction":
        return (tf.reduce_sum(tf.square(outputs - features)), tf.cast(tf.size(features), tf.float32),
                tf.constant(0.0))
    if objective == "next_token":  # token t+1 from tokens up to t; padding (id 0) is never a target
        targets, logits = tf.cast(features[:, 1:], tf.int64), outputs[:, :-1]
        counted = tf.cast(tf.not_equal(targets, 0), tf.float32)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        right = tf.cast(tf.equal(tf.argmax(logits, axis=-1), targets), tf.float32) * counted
        return tf.reduce_sum(losses * counted), tf.reduce_sum(counted), tf.reduce_sum(right)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=outputs)
    right = tf.cast(tf.equal(tf.argmax(outputs, axis=-1), labels), tf.float32)
    return tf.reduce_sum(losses), tf.cast(tf.size(labels), tf.float32), tf.reduce_sum(right)


def _mean(tf: Any, parts: tuple[Any, Any, Any]) -> Any:
    """The mean loss of :func:`_objective`'s (sum, terms, right)."""
    total, terms, _ = parts
    return total / tf.maximum(terms, 1.0)


def _adversarial_loss(tf: Any, model: Any, real: Any, noise: Any, group: int) -> Any:
    """Group 0, the discriminator's loss: real rows scored real, generated ones fake; group 1, the generator's:
    generated rows scored real (binary cross-entropy on logits; Goodfellow et al., 2014, non-saturating generator
    loss). Only the group's own loss is computed."""
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    fake = model.generator(tf.cast(noise, tf.float32), training=True)
    if group == 1:
        generated = model.discriminator(fake, training=True)
        return tf.reduce_mean(bce(labels=tf.ones_like(generated), logits=generated))
    real_scores = model.discriminator(real, training=True)
    fake_scores = model.discriminator(tf.stop_gradient(fake), training=True)
    return tf.reduce_mean(bce(labels=tf.ones_like(real_scores), logits=real_scores)) + tf.reduce_mean(
        bce(labels=tf.zeros_like(fake_scores), logits=fake_scores))


def _step(tf: Any, group: Any, params: TrainingParams, loss_of: Any) -> Any:
    """One compiled training step moving ``group``'s trainable variables on ``loss_of(x, y)``, with params'
    optimiser, FedProx's term when ``mu > 0`` and ``weight_decay`` added to the gradient."""
    keras = import_keras()
    if params.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=params.lr)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=params.lr, momentum=params.momentum)
    trainable = list(group.trainable_variables)
    start = [tf.constant(v.numpy()) for v in trainable]
    mu, decay = params.mu, params.weight_decay

    @tf.function(reduce_retracing=True)
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_of(x, y)
            if mu > 0:
                loss += 0.5 * mu * tf.add_n([tf.reduce_sum(tf.square(v - s))
                                             for v, s in zip(trainable, start, strict=True)])
        gradients = tape.gradient(loss, trainable)
        if decay > 0:
            gradients = [g + decay * v for g, v in zip(gradients, trainable, strict=True)]
        optimizer.apply_gradients(zip(gradients, trainable, strict=True))
        return loss

    return step


def _require_no_graph(data: Dataset) -> None:
    if data.edges is not None:
        raise DataError("the dataset is a graph (nodes and edges), and the TensorFlow zoo has no graph model",
                        "train graphs in a PyTorch repository (zoo model gcn)")


class KerasTrainer:
    """Trains a Keras model on one of :data:`federity.config.Objective`: class scores (logits) against labels,
    a reconstruction of its input, or next-token scores over token ids."""

    name = "tensorflow"
    version = 1

    def fit(self, model: Any, data: Dataset, params: TrainingParams, objective: str = "cross_entropy"
            ) -> dict[str, float]:
        """Train ``model`` in place for ``params.epochs`` epochs on ``objective``; return :meth:`evaluate`'s metrics
        on ``data`` after."""
        import tensorflow as tf

        _require_no_graph(data)
        features, labels = channel_last(data.features), np.asarray(data.labels, np.int64)
        adversarial = objective == "adversarial"

        def loss_of(index: int) -> Any:
            if adversarial:  # index 0: the discriminator's loss, 1: the generator's
                return lambda x, noise: _adversarial_loss(tf, model, x, noise, index)
            return lambda x, y: _mean(tf, _objective(tf, objective, model(x, training=True), x, y))

        # the model's one step, or a GAN's two: the discriminator's, then the generator's
        groups = [model.discriminator, model.generator] if adversarial else [model]
        steps = [_step(tf, group, params, loss_of(index)) for index, group in enumerate(groups)]
        rng = np.random.default_rng(params.seed)
        for _ in range(params.epochs):
            order = rng.permutation(len(labels))
            for begin in range(0, len(labels), params.batch_size):
                batch = order[begin:begin + params.batch_size]
                second = rng.normal(size=(len(batch), model.noise)) if adversarial else labels[batch]
                for step in steps:
                    loss = step(tf.constant(features[batch]), tf.constant(second, second.dtype))
            require_finite_loss(float(loss))
        return self.evaluate(model, data, objective)

    def memory(self, model: Any, data: Dataset, params: TrainingParams) -> MemoryEstimate:
        """Sizes from the model's variables and from every layer's output on one sample (inference mode)."""
        _require_no_graph(data)
        weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
        trainable = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.trainable_weights)
        return estimate(weights, trainable, _activation_bytes(model, channel_last(data.features[:1])), params,
                        data.n_samples)

    def head(self, model: Any) -> ProvedHead:
        """The last ``Dense`` layer's kernel (``[features, classes]``) and bias."""
        keras = import_keras()
        layers = list(model.layers)
        last = layers[-1] if layers else None
        if not (isinstance(model, keras.Sequential) and isinstance(last, keras.layers.Dense) and last.use_bias
                and last.activation in (None, keras.activations.linear)):
            raise ProofError("proofs of training need a keras.Sequential ending in a Dense layer with a bias and "
                             "no activation (every zoo model is)", "use a zoo model, or build yours that way")
        index = len(layers) - 1
        return ProvedHead(f"{index}.kernel", f"{index}.bias", "in_out")

    def head_features(self, model: Any, data: Dataset) -> np.ndarray:
        """``data`` as the last layer sees it: passed through every layer before it, frozen (inference mode)."""
        self.head(model)
        seen = channel_last(data.features)
        for layer in model.layers[:-1]:
            seen = layer(seen, training=False)
        return np.asarray(seen, np.float64).reshape(len(data.labels), -1)

    def evaluate(self, model: Any, data: Dataset, objective: str = "cross_entropy") -> dict[str, float]:
        """The objective's mean loss on ``data`` and, but for ``reconstruction``, the share it got right (classes,
        or next tokens), scored :data:`EVALUATION_BATCH` samples at a time; for ``adversarial``, both groups'
        losses on ``data`` and as many generated rows (noise seeded 0)."""
        import tensorflow as tf

        features, labels = channel_last(data.features), np.asarray(data.labels, np.int64)
        if objective == "adversarial":
            noise = np.random.default_rng(0).normal(size=(len(features), model.noise)).astype(np.float32)
            real, fake = tf.constant(features), tf.constant(noise)
            return {"discriminator_loss": float(_adversarial_loss(tf, model, real, fake, 0)),
                    "generator_loss": float(_adversarial_loss(tf, model, real, fake, 1))}
        total, terms, right = 0.0, 0.0, 0.0
        for i in range(0, len(labels), EVALUATION_BATCH):
            x, y = features[i:i + EVALUATION_BATCH], labels[i:i + EVALUATION_BATCH]
            parts = _objective(tf, objective, model(x, training=False), tf.constant(x), tf.constant(y))
            total, terms, right = (a + float(b) for a, b in zip((total, terms, right), parts, strict=True))
        loss = total / terms if terms else float("nan")
        metrics = {"loss": loss if math.isfinite(loss) else float("nan")}
        if objective != "reconstruction":
            metrics["accuracy"] = right / terms if terms else float("nan")
        return metrics
