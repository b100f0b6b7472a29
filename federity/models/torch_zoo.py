"""PyTorch's zoo (:class:`TorchZoo`): builders that each return a fresh ``nn.Module``. The module imports torch
only when a builder runs, so listing the zoo stays cheap."""

from __future__ import annotations

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
                 "two 3x3 conv blocks, global average pooling, linear; any image size"),
        ZooModel("lstm", "torch", "federity.models.torch_zoo:lstm",
                 {"input_size": 0, "hidden": 32, "layers": 1, "num_classes": 2}, ("input_size",),
                 "LSTM over (steps, input_size) sequences, linear on the last step; any length"),
        ZooModel("gru", "torch", "federity.models.torch_zoo:gru",
                 {"input_size": 0, "hidden": 32, "layers": 1, "num_classes": 2}, ("input_size",),
                 "GRU over (steps, input_size) sequences, linear on the last step; any length"),
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
