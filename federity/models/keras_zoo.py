"""TensorFlow's zoo (:class:`KerasZoo`): Keras 3 builders on the TensorFlow backend. Each returns a fresh, built
``keras.Sequential`` whose layers mirror the PyTorch builder of the same id (activations as layers of their own),
so a zoo id names the same architecture in either framework. Keras is imported only when a builder runs. The image
families (ResNet, MobileNetV2, EfficientNet) are ``keras.applications``' definitions with ``weights=None``,
without their classifier, under a dense layer of ours (so any image size and channel count)."""

from __future__ import annotations

from typing import Any

from federity.models import ZooModel
from federity.weights.keras_adapter import import_keras


class KerasZoo:
    """The TensorFlow entries of the zoo."""

    name = "tensorflow"
    version = 1
    models = (
        ZooModel("logistic-regression", "tensorflow", "federity.models.keras_zoo:logistic_regression",
                 {"in_features": 0, "num_classes": 2}, ("in_features",),
                 "one dense layer; class scores for cross-entropy"),
        ZooModel("mlp", "tensorflow", "federity.models.keras_zoo:mlp",
                 {"in_features": 0, "hidden": 16, "num_classes": 2}, ("in_features",), "dense, ReLU, dense"),
        ZooModel("cnn", "tensorflow", "federity.models.keras_zoo:cnn", {"in_channels": 1, "num_classes": 10}, (),
                 "two 3x3 conv blocks, global average pooling, dense; any image size", data="images"),
        ZooModel("resnet", "tensorflow", "federity.models.keras_zoo:resnet",
                 {"in_channels": 3, "num_classes": 10, "depth": 50}, (),
                 "ResNet-50/101/152 (keras.applications has no 18 or 34); any image size of 32 or more", data="images"),
        ZooModel("mobilenet", "tensorflow", "federity.models.keras_zoo:mobilenet",
                 {"in_channels": 3, "num_classes": 10, "width_percent": 100}, (),
                 "MobileNetV2, width multiplier width_percent/100; any image size of 32 or more", data="images"),
        ZooModel("efficientnet", "tensorflow", "federity.models.keras_zoo:efficientnet",
                 {"in_channels": 3, "num_classes": 10, "variant": 0}, (),
                 "EfficientNet-B0 to B7 (variant 0-7); any image size of 32 or more", data="images"),
        ZooModel("transformer-encoder", "tensorflow", "federity.models.keras_zoo:transformer_encoder",
                 {"vocab_size": 0, "max_length": 128, "dim": 64, "layers": 2, "heads": 4, "num_classes": 2},
                 ("vocab_size",), "DistilBERT-style text classifier on token ids (a committed tokenizer's)",
                 data="text"),
        ZooModel("transformer-decoder", "tensorflow", "federity.models.keras_zoo:transformer_decoder",
                 {"vocab_size": 0, "max_length": 128, "dim": 64, "layers": 2, "heads": 4}, ("vocab_size",),
                 "GPT-2-style language model on token ids (a committed tokenizer's)", "next_token", data="text"),
        ZooModel("autoencoder", "tensorflow", "federity.models.keras_zoo:autoencoder",
                 {"in_features": 0, "hidden": 32, "code": 8}, ("in_features",),
                 "dense encoder to a code and decoder back, ReLU between; unlabeled rows", "reconstruction"),
        ZooModel("gan", "tensorflow", "federity.models.keras_zoo:gan",
                 {"in_features": 0, "noise": 8, "hidden": 32}, ("in_features",),
                 "generator (noise to rows) and discriminator (rows to a real/fake score); unlabeled rows",
                 "adversarial"),
        ZooModel("lstm", "tensorflow", "federity.models.keras_zoo:lstm",
                 {"input_size": 0, "hidden": 32, "layers": 1, "num_classes": 2}, ("input_size",),
                 "LSTM over (steps, input_size) sequences, dense on the last step; any length", data="sequences"),
        ZooModel("gru", "tensorflow", "federity.models.keras_zoo:gru",
                 {"input_size": 0, "hidden": 32, "layers": 1, "num_classes": 2}, ("input_size",),
                 "GRU over (steps, input_size) sequences, dense on the last step; any length", data="sequences"),
    )


def logistic_regression(in_features: int, num_classes: int = 2) -> Any:
    """Multinomial logistic regression: one dense layer producing class scores."""
    keras = import_keras()
    return keras.Sequential([keras.Input((in_features,)), keras.layers.Dense(num_classes)])


def mlp(in_features: int, hidden: int = 16, num_classes: int = 2) -> Any:
    """A one-hidden-layer perceptron."""
    keras = import_keras()
    layers = keras.layers
    return keras.Sequential([keras.Input((in_features,)), layers.Dense(hidden), layers.ReLU(),
                             layers.Dense(num_classes)])


def cnn(in_channels: int = 1, num_classes: int = 10) -> Any:
    """A small convolutional network on channel-last images; global average pooling makes it independent of
    image size."""
    keras = import_keras()
    layers = keras.layers
    return keras.Sequential([
        keras.Input((None, None, in_channels)),
        layers.Conv2D(8, 3, padding="same"),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, padding="same"),
        layers.ReLU(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(num_classes),
    ])


def _sequence_classifier(cell: str, input_size: int, hidden: int, layers: int, num_classes: int) -> Any:
    keras = import_keras()
    recurrent = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    stack = [recurrent(hidden, return_sequences=i < layers - 1) for i in range(layers)]
    return keras.Sequential([keras.Input((None, input_size)), *stack, keras.layers.Dense(num_classes)])


def lstm(input_size: int, hidden: int = 32, layers: int = 1, num_classes: int = 2) -> Any:
    """A sequence classifier on stacked LSTMs (Hochreiter and Schmidhuber, 1997), the last one's final state scored
    by a dense layer."""
    return _sequence_classifier("lstm", input_size, hidden, layers, num_classes)


def gru(input_size: int, hidden: int = 32, layers: int = 1, num_classes: int = 2) -> Any:
    """A sequence classifier on stacked GRUs (Cho et al., 2014), the last one's final state scored by a dense
    layer."""
    return _sequence_classifier("gru", input_size, hidden, layers, num_classes)


def _on_backbone(backbone: Any, in_channels: int, num_classes: int) -> Any:
    """``backbone`` (a ``keras.applications`` model without its classifier, average-pooled) under a dense layer."""
    keras = import_keras()
    return keras.Sequential([keras.Input((None, None, in_channels)), backbone, keras.layers.Dense(num_classes)])


def resnet(in_channels: int = 3, num_classes: int = 10, depth: int = 50) -> Any:
    """ResNet (He, Zhang, Ren and Sun, CVPR 2016) at ``depth`` 50, 101 or 152, as ``keras.applications`` has it."""
    applications = import_keras().applications
    models = {50: applications.ResNet50, 101: applications.ResNet101, 152: applications.ResNet152}
    if depth not in models:
        raise ValueError("depth must be 50, 101 or 152 (keras.applications defines no ResNet-18 or 34; a PyTorch "
                         "repository has them)")
    backbone = models[depth](include_top=False, weights=None, input_shape=(None, None, in_channels), pooling="avg")
    return _on_backbone(backbone, in_channels, num_classes)


def mobilenet(in_channels: int = 3, num_classes: int = 10, width_percent: int = 100) -> Any:
    """MobileNetV2 (Sandler et al., CVPR 2018), its channels scaled by ``width_percent`` / 100."""
    backbone = import_keras().applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, in_channels), alpha=width_percent / 100,
        pooling="avg")
    return _on_backbone(backbone, in_channels, num_classes)


def efficientnet(in_channels: int = 3, num_classes: int = 10, variant: int = 0) -> Any:
    """EfficientNet-B``variant`` (Tan and Le, ICML 2019), 0 to 7, as ``keras.applications`` has it."""
    applications = import_keras().applications
    if not 0 <= variant <= 7:
        raise ValueError("variant must be 0 to 7 (EfficientNet-B0 to B7)")
    backbone = getattr(applications, f"EfficientNetB{variant}")(
        include_top=False, weights=None, input_shape=(None, None, in_channels), pooling="avg")
    return _on_backbone(backbone, in_channels, num_classes)


def transformer_encoder(vocab_size: int, max_length: int = 128, dim: int = 64, layers: int = 2, heads: int = 4,
                        num_classes: int = 2) -> Any:
    """A DistilBERT-style text classifier (Sanh et al., 2019; the encoder of Vaswani et al., "Attention Is All You
    Need", 2017) from Keras' own layers, as KerasHub's definition needs tensorflow-text, which has no release for
    tensorflow-cpu: token and position embeddings, ``layers`` post-norm blocks of ``heads``-head self-attention
    (padding, id 0, masked out) and a GELU feed-forward of ``4 * dim``, the first position scored by a dense layer."""
    keras = import_keras()
    layers_ = keras.layers
    ids = keras.Input((None,), name="token_ids")
    tokens = layers_.Embedding(vocab_size, dim, name="token_embedding")(ids)
    steps = keras.ops.cumsum(keras.ops.ones_like(ids, dtype="int32"), axis=1) - 1  # 0, 1, … in every row
    positions = layers_.Embedding(max_length, dim, name="position_embedding")(steps)
    hidden = layers_.LayerNormalization(epsilon=1e-12, name="embedding_norm")(tokens + positions)
    mask = keras.ops.not_equal(ids, 0)[:, None, :]
    for block in range(layers):
        attended = layers_.MultiHeadAttention(heads, dim // heads, name=f"attention_{block}")(
            hidden, hidden, attention_mask=mask)
        hidden = layers_.LayerNormalization(epsilon=1e-12, name=f"attention_norm_{block}")(hidden + attended)
        feed = layers_.Dense(4 * dim, activation="gelu", name=f"feed_in_{block}")(hidden)
        feed = layers_.Dense(dim, name=f"feed_out_{block}")(feed)
        hidden = layers_.LayerNormalization(epsilon=1e-12, name=f"feed_norm_{block}")(hidden + feed)
    scores = layers_.Dense(num_classes, name="classifier")(hidden[:, 0])
    return keras.Model(ids, scores)


def transformer_decoder(vocab_size: int, max_length: int = 128, dim: int = 64, layers: int = 2,
                        heads: int = 4) -> Any:
    """A GPT-2-style language model (Radford et al., 2019) from Keras' own layers (KerasHub's needs
    tensorflow-text): token and position embeddings, ``layers`` pre-norm blocks of causal ``heads``-head
    self-attention (padding, id 0, masked out) and a GELU feed-forward of ``4 * dim``, a final norm, and a dense
    layer scoring the next token id at every position."""
    keras = import_keras()
    layers_ = keras.layers
    ids = keras.Input((None,), name="token_ids")
    steps = keras.ops.cumsum(keras.ops.ones_like(ids, dtype="int32"), axis=1) - 1
    hidden = layers_.Embedding(vocab_size, dim, name="token_embedding")(ids) + layers_.Embedding(
        max_length, dim, name="position_embedding")(steps)
    padding = keras.ops.not_equal(ids, 0)[:, None, :]
    for block in range(layers):
        normed = layers_.LayerNormalization(epsilon=1e-5, name=f"attention_norm_{block}")(hidden)
        hidden = hidden + layers_.MultiHeadAttention(heads, dim // heads, name=f"attention_{block}")(
            normed, normed, attention_mask=padding, use_causal_mask=True)
        normed = layers_.LayerNormalization(epsilon=1e-5, name=f"feed_norm_{block}")(hidden)
        feed = layers_.Dense(4 * dim, activation="gelu", name=f"feed_in_{block}")(normed)
        hidden = hidden + layers_.Dense(dim, name=f"feed_out_{block}")(feed)
    hidden = layers_.LayerNormalization(epsilon=1e-5, name="final_norm")(hidden)
    return keras.Model(ids, layers_.Dense(vocab_size, name="next_token")(hidden))


def autoencoder(in_features: int, hidden: int = 32, code: int = 8) -> Any:
    """An autoencoder (Hinton and Salakhutdinov, Science 2006): ``in_features`` → ``hidden`` → ``code`` →
    ``hidden`` → ``in_features``."""
    keras = import_keras()
    layers = keras.layers
    return keras.Sequential([keras.Input((in_features,)), layers.Dense(hidden), layers.ReLU(), layers.Dense(code),
                             layers.ReLU(), layers.Dense(hidden), layers.ReLU(), layers.Dense(in_features)])


def gan(in_features: int, noise: int = 8, hidden: int = 32) -> Any:
    """A generative adversarial network (Goodfellow et al., NeurIPS 2014) for rows of ``in_features``: a generator
    from ``noise`` normal values (layer 0) and a discriminator scoring rows as real (layer 1, a logit). Called on
    rows, it is the discriminator."""
    keras = import_keras()
    layers = keras.layers

    class Gan(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.noise = noise
            self.generator = keras.Sequential([keras.Input((noise,)), layers.Dense(hidden), layers.ReLU(),
                                               layers.Dense(in_features)], name="generator")
            self.discriminator = keras.Sequential([keras.Input((in_features,)), layers.Dense(hidden),
                                                   layers.LeakyReLU(0.2), layers.Dense(1)], name="discriminator")

        def call(self, x: Any) -> Any:
            return self.discriminator(x)

    model = Gan()
    model(keras.ops.zeros((1, in_features)))
    return model
