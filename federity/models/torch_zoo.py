"""PyTorch builders for the zoo (see :data:`federity.models.ZOO`). Each returns a fresh ``nn.Module``."""

from __future__ import annotations

from torch import nn


def logistic_regression(in_features: int, num_classes: int = 2) -> nn.Module:
    """Multinomial logistic regression: one linear layer producing class scores."""
    return nn.Sequential(nn.Linear(in_features, num_classes))


def mlp(in_features: int, hidden: int = 16, num_classes: int = 2) -> nn.Module:
    """A one-hidden-layer perceptron."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def cnn(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """A small convolutional network; global average pooling makes it independent of image size."""
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
