"""PyTorch's zoo (:class:`TorchZoo`): builders that each return a fresh ``nn.Module``. The module imports torch
only when a builder runs, so listing the zoo stays cheap. The image families (ResNet, MobileNetV2, EfficientNet)
are Hugging Face ``transformers``' definitions built from a configuration, never downloaded."""

from __future__ import annotations

import itertools
import os
from typing import Any

from federity.models import ZooModel


class TorchZoo:
    """The PyTorch entries of the zoo."""

    name = "torch"
    version = 1
    models = (
        ZooModel("logistic-regression", "torch", "federity.models.torch_zoo:logistic_regression",
                 {"in_features": 0, "num_classes": 2}, ("in_features",),
                 "one linear layer; class scores for cross-entropy"),
        ZooModel("mlp", "torch", "federity.models.torch_zoo:mlp",
                 {"in_features": 0, "hidden": 16, "num_classes": 2}, ("in_features",), "linear, ReLU, linear"),
        ZooModel("cnn", "torch", "federity.models.torch_zoo:cnn", {"in_channels": 1, "num_classes": 10}, (),
                 "two 3x3 conv blocks, global average pooling, linear; any image size", data="images"),
        ZooModel("resnet", "torch", "federity.models.torch_zoo:resnet",
                 {"in_channels": 3, "num_classes": 10, "depth": 18, "width": 64}, (),
                 "ResNet-18/34 (basic blocks) or 50/101/152 (bottlenecks), base width 64; any image size",
                 data="images"),
        ZooModel("mobilenet", "torch", "federity.models.torch_zoo:mobilenet",
                 {"in_channels": 3, "num_classes": 10, "width_percent": 100}, (),
                 "MobileNetV2, width multiplier width_percent/100; any image size", data="images"),
        ZooModel("efficientnet", "torch", "federity.models.torch_zoo:efficientnet",
                 {"in_channels": 3, "num_classes": 10, "width_percent": 100, "depth_percent": 100}, (),
                 "EfficientNet-B0 scaled by width_percent/100 and depth_percent/100; any image size", data="images"),
        ZooModel("transformer-encoder", "torch", "federity.models.torch_zoo:transformer_encoder",
                 {"vocab_size": 0, "max_length": 128, "dim": 64, "layers": 2, "heads": 4, "num_classes": 2},
                 ("vocab_size",), "DistilBERT-style text classifier on token ids (a committed tokenizer's)",
                 data="text"),
        ZooModel("transformer-decoder", "torch", "federity.models.torch_zoo:transformer_decoder",
                 {"vocab_size": 0, "max_length": 128, "dim": 64, "layers": 2, "heads": 4}, ("vocab_size",),
                 "GPT-2-style language model on token ids (a committed tokenizer's)", "next_token", data="text"),
        ZooModel("autoencoder", "torch", "federity.models.torch_zoo:autoencoder",
                 {"in_features": 0, "hidden": 32, "code": 8}, ("in_features",),
                 "linear encoder to a code and decoder back, ReLU between; unlabeled rows", "reconstruction"),
        ZooModel("gan", "torch", "federity.models.torch_zoo:gan",
                 {"in_features": 0, "noise": 8, "hidden": 32}, ("in_features",),
                 "generator (noise to rows) and discriminator (rows to a real/fake score); unlabeled rows",
                 "adversarial"),
        ZooModel("gcn", "torch", "federity.models.torch_zoo:gcn",
                 {"in_features": 0, "hidden": 16, "layers": 2, "num_classes": 2}, ("in_features",),
                 "graph convolutional network (PyTorch Geometric) classifying a graph's nodes", data="graph"),
        ZooModel("lstm", "torch", "federity.models.torch_zoo:lstm",
                 {"input_size": 0, "hidden": 32, "layers": 1, "num_classes": 2}, ("input_size",),
                 "LSTM over (steps, input_size) sequences, linear on the last step; any length", data="sequences"),
        ZooModel("gru", "torch", "federity.models.torch_zoo:gru",
                 {"input_size": 0, "hidden": 32, "layers": 1, "num_classes": 2}, ("input_size",),
                 "GRU over (steps, input_size) sequences, linear on the last step; any length", data="sequences"),
    )


def logistic_regression(in_features: int, num_classes: int = 2) -> Any:
    """Multinomial logistic regression: one linear layer producing class scores."""
    from torch import nn

    return nn.Sequential(nn.Linear(in_features, num_classes))


def mlp(in_features: int, hidden: int = 16, num_classes: int = 2) -> Any:
    """A one-hidden-layer perceptron."""
    from torch import nn

    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def cnn(in_channels: int = 1, num_classes: int = 10) -> Any:
    """A small convolutional network; global average pooling makes it independent of image size."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def _sequence_classifier(cell: str, input_size: int, hidden: int, layers: int, num_classes: int) -> Any:
    from torch import nn

    class SequenceClassifier(nn.Module):
        """A recurrent network over ``(batch, steps, input_size)`` whose last step's state a linear layer scores."""

        def __init__(self) -> None:
            super().__init__()
            recurrent = nn.LSTM if cell == "lstm" else nn.GRU
            self.rnn = recurrent(input_size, hidden, num_layers=layers, batch_first=True)
            self.head = nn.Linear(hidden, num_classes)

        def forward(self, x: Any) -> Any:
            states, _ = self.rnn(x)
            return self.head(states[:, -1])

    return SequenceClassifier()


def lstm(input_size: int, hidden: int = 32, layers: int = 1, num_classes: int = 2) -> Any:
    """A sequence classifier on an LSTM (Hochreiter and Schmidhuber, "Long Short-Term Memory", 1997)."""
    return _sequence_classifier("lstm", input_size, hidden, layers, num_classes)


def gru(input_size: int, hidden: int = 32, layers: int = 1, num_classes: int = 2) -> Any:
    """A sequence classifier on a GRU (Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder",
    2014)."""
    return _sequence_classifier("gru", input_size, hidden, layers, num_classes)


_RESNET_STAGES = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
                  101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}


def _logits_of(model: Any) -> Any:
    """A ``transformers`` image classifier as a module that maps images to class scores."""
    from torch import nn

    class ImageClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return self.model(pixel_values=x).logits

    return ImageClassifier()


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are built from configurations: nothing to download
    import transformers

    return transformers


def resnet(in_channels: int = 3, num_classes: int = 10, depth: int = 18, width: int = 64) -> Any:
    """ResNet (He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016) at ``depth``
    18, 34, 50, 101 or 152; ``width`` is the first stage's channels (64 in the paper)."""
    if depth not in _RESNET_STAGES:
        raise ValueError(f"depth must be one of {', '.join(map(str, _RESNET_STAGES))}")
    block, depths = _RESNET_STAGES[depth]
    expansion = 1 if block == "basic" else 4
    config = _transformers().ResNetConfig(
        num_channels=in_channels, embedding_size=width, layer_type=block, depths=depths, num_labels=num_classes,
        hidden_sizes=[width * expansion * 2**stage for stage in range(4)])
    return _logits_of(_transformers().ResNetForImageClassification(config))


def mobilenet(in_channels: int = 3, num_classes: int = 10, width_percent: int = 100) -> Any:
    """MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", CVPR 2018), its channels scaled by ``width_percent`` / 100."""
    config = _transformers().MobileNetV2Config(num_channels=in_channels, depth_multiplier=width_percent / 100,
                                               num_labels=num_classes)
    return _logits_of(_transformers().MobileNetV2ForImageClassification(config))


def efficientnet(in_channels: int = 3, num_classes: int = 10, width_percent: int = 100,
                 depth_percent: int = 100) -> Any:
    """EfficientNet (Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML
    2019): B0 at 100/100; its channels scaled by ``width_percent`` / 100 and its depth by ``depth_percent`` / 100."""
    width, divisor = width_percent / 100, 8
    top = max(divisor, int(1280 * width + divisor / 2) // divisor * divisor)  # the paper's rounding of 1280
    top += divisor if top < 0.9 * 1280 * width else 0
    config = _transformers().EfficientNetConfig(num_channels=in_channels, width_coefficient=width,
                                                depth_coefficient=depth_percent / 100, hidden_dim=top,
                                                num_labels=num_classes)
    return _logits_of(_transformers().EfficientNetForImageClassification(config))


def _on_token_ids(model: Any) -> Any:
    """A ``transformers`` text model as a module that maps token ids (as numbers; 0 is padding, masked out of
    attention) to its scores."""
    from torch import nn

    class TokenModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            ids = x.long()
            return self.model(input_ids=ids, attention_mask=(ids != 0).long()).logits

    return TokenModel()


def transformer_encoder(vocab_size: int, max_length: int = 128, dim: int = 64, layers: int = 2, heads: int = 4,
                        num_classes: int = 2) -> Any:
    """A DistilBERT text classifier (Sanh, Debut, Chaumond and Wolf, "DistilBERT, a distilled version of BERT",
    2019) of ``layers`` blocks, ``dim`` wide with ``heads`` attention heads, on token ids (0 is padding, masked
    out of attention) of at most ``max_length`` tokens."""
    config = _transformers().DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=max_length, dim=dim,
                                              n_layers=layers, n_heads=heads, hidden_dim=4 * dim,
                                              num_labels=num_classes, pad_token_id=0)
    return _on_token_ids(_transformers().DistilBertForSequenceClassification(config))


def transformer_decoder(vocab_size: int, max_length: int = 128, dim: int = 64, layers: int = 2,
                        heads: int = 4) -> Any:
    """A GPT-2 language model (Radford, Wu, Child, Luan, Amodei and Sutskever, "Language Models are Unsupervised
    Multitask Learners", 2019) of ``layers`` blocks, ``dim`` wide with ``heads`` heads, scoring the next token id
    at each of at most ``max_length`` positions (0 is padding, masked out)."""
    config = _transformers().GPT2Config(vocab_size=vocab_size, n_positions=max_length, n_embd=dim, n_layer=layers,
                                        n_head=heads, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return _on_token_ids(_transformers().GPT2LMHeadModel(config))


def autoencoder(in_features: int, hidden: int = 32, code: int = 8) -> Any:
    """An autoencoder (Hinton and Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks",
    Science 2006): ``in_features`` → ``hidden`` → ``code`` → ``hidden`` → ``in_features``."""
    from torch import nn

    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.ReLU(),
                         nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, in_features))


def gan(in_features: int, noise: int = 8, hidden: int = 32) -> Any:
    """A generative adversarial network (Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014) for rows
    of ``in_features``: a generator from ``noise`` normal values, a discriminator scoring rows as real (its
    output, a logit). Its tensors are two groups, ``generator.*`` and ``discriminator.*``; called on rows, it is
    the discriminator."""
    from torch import nn

    class Gan(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.noise = noise
            self.generator = nn.Sequential(nn.Linear(noise, hidden), nn.ReLU(), nn.Linear(hidden, in_features))
            self.discriminator = nn.Sequential(nn.Linear(in_features, hidden), nn.LeakyReLU(0.2),
                                               nn.Linear(hidden, 1))

        def forward(self, x: Any) -> Any:
            return self.discriminator(x)

    return Gan()


def gcn(in_features: int, hidden: int = 16, layers: int = 2, num_classes: int = 2) -> Any:
    """A graph convolutional network (Kipf and Welling, "Semi-Supervised Classification with Graph Convolutional
    Networks", ICLR 2017) of ``layers`` PyTorch Geometric ``GCNConv`` layers, ReLU between, scoring each node of
    a graph: called as ``model(x, edge_index)``."""
    from torch import nn
    from torch_geometric.nn import GCNConv

    class NodeClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = [in_features, *[hidden] * (layers - 1), num_classes]
            self.convs = nn.ModuleList(GCNConv(a, b) for a, b in itertools.pairwise(sizes))

        def forward(self, x: Any, edge_index: Any) -> Any:
            for index, conv in enumerate(self.convs):
                x = conv(x, edge_index)
                if index < len(self.convs) - 1:
                    x = x.relu()
            return x

    return NodeClassifier()
