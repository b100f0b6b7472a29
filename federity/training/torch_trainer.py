"""PyTorch trainer: mini-batch SGD or Adam on the task's objective (classification, reconstruction, next-token
prediction, or a GAN's two alternating steps), deterministic for a given seed.

With ``mu > 0`` in ``params.yaml`` the local objective is FedProx's (Li, Sahu, Zaheer, Sanjabi, Talwalkar and
Smith, "Federated Optimization in Heterogeneous Networks", MLSys 2020): the task's loss plus the proximal term
``(mu / 2) * ||w - w_start||^2``, where ``w_start`` are the weights training started from (the global model).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from federity.data import Dataset
from federity.errors import ProofError
from federity.proofs.policy import ProvedHead
from federity.training import EVALUATION_BATCH, TrainingParams, require_finite_loss
from federity.training.memory import MemoryEstimate, estimate


class _Proximal:
    """FedProx's proximal term (Li et al., MLSys 2020, section 3): ``(mu / 2) * sum ||w - w_start||^2`` over the
    trainable parameters, ``w_start`` a detached copy of them taken when it is made."""

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.mu = mu
        self.pairs = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]

    def __call__(self) -> torch.Tensor:
        """The term's value, differentiable in the current parameters (its gradient is ``mu * (w - w_start)``)."""
        squared = sum(((p - start).pow(2).sum() for p, start in self.pairs), torch.zeros(()))
        return 0.5 * self.mu * squared


def _tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(data.features, dtype=torch.float32), torch.tensor(data.labels, dtype=torch.long)


def _objective(objective: str, outputs: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's summed loss under ``objective`` (:data:`federity.config.Objective`), how many terms it sums,
    and how many of them the model got right (0 for ``reconstruction``)."""
    if objective == "reconstruction":
        return nn.functional.mse_loss(outputs, features, reduction="sum"), torch.tensor(features.numel()), \
            torch.tensor(0)
    if objective == "next_token":  # token t+1 from tokens up to t; padding (id 0) is never a target
        targets, logits = features[:, 1:].long().reshape(-1), outputs[:, :-1].reshape(-1, outputs.shape[-1])
        counted = targets != 0
        loss = nn.functional.cross_entropy(logits, targets, ignore_index=0, reduction="sum")
        return loss, counted.sum(), ((logits.argmax(dim=1) == targets) & counted).sum()
    return (nn.functional.cross_entropy(outputs, labels, reduction="sum"), torch.tensor(len(labels)),
            (outputs.argmax(dim=1) == labels).sum())


def _training_loss(objective: str, outputs: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
                   ) -> torch.Tensor:
    """The batch's mean loss under ``objective``, with nothing a step does not need (:func:`_objective` also
    counts what the model got right, for the metrics)."""
    if objective == "cross_entropy":
        return nn.functional.cross_entropy(outputs, labels)
    if objective == "reconstruction":
        return nn.functional.mse_loss(outputs, features)
    total, terms, _ = _objective(objective, outputs, features, labels)  # next_token: a batch may be all padding
    return total / max(int(terms), 1)


def _metrics(objective: str, total: float, terms: int, right: int) -> dict[str, float]:
    """The mean loss, and but for ``reconstruction`` the share right, of :func:`_objective`'s sums."""
    loss = total / terms if terms else float("nan")
    metrics = {"loss": loss if math.isfinite(loss) else float("nan")}
    if objective != "reconstruction":
        metrics["accuracy"] = right / terms if terms else float("nan")
    return metrics


def _fit_graph(model: nn.Module, data: Dataset, params: TrainingParams, objective: str) -> None:
    """Train a graph model on the whole graph, one step an epoch (a node's neighbours are part of its input, so
    its nodes are not split into batches)."""
    features, labels = _tensors(data)
    edges = torch.from_numpy(data.edges)
    optimizer = _optimizer(model, params)
    proximal = _Proximal(model, params.mu) if params.mu > 0 else None
    model.train()
    for _ in range(params.epochs):
        optimizer.zero_grad()
        loss = _training_loss(objective, model(features, edges), features, labels)
        loss = loss + proximal() if proximal is not None else loss
        loss.backward()
        optimizer.step()
        require_finite_loss(float(loss))


def _optimizer(module: nn.Module, params: TrainingParams) -> torch.optim.Optimizer:
    """``params``' optimiser over ``module``'s parameters."""
    if params.optimizer == "adam":
        return torch.optim.Adam(module.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.SGD(module.parameters(), lr=params.lr, momentum=params.momentum,
                           weight_decay=params.weight_decay)


def _discriminator_loss(model: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Real rows scored real and generated ones fake: binary cross-entropy on logits (Goodfellow et al., 2014);
    ``fake`` is detached, so only the discriminator learns from it."""
    bce = nn.functional.binary_cross_entropy_with_logits
    real_scores, fake_scores = model.discriminator(real), model.discriminator(fake.detach())
    return bce(real_scores, torch.ones_like(real_scores)) + bce(fake_scores, torch.zeros_like(fake_scores))


def _generator_loss(model: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Generated rows scored real (the non-saturating generator loss of Goodfellow et al., 2014)."""
    scores = model.discriminator(fake)
    return nn.functional.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))


def _fit_adversarial(model: nn.Module, data: Dataset, params: TrainingParams) -> None:
    """Alternate, batch by batch, a discriminator step and a generator step, each moving only its own group
    (and each with its own FedProx term when ``mu > 0``); the noise is drawn from ``params.seed``."""
    features, _ = _tensors(data)
    generator = torch.Generator().manual_seed(params.seed)
    groups = [(model.discriminator, _optimizer(model.discriminator, params)),
              (model.generator, _optimizer(model.generator, params))]
    proximal = [_Proximal(group, params.mu) if params.mu > 0 else None for group, _ in groups]
    model.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(features), params.batch_size):
            real = features[order[start:start + params.batch_size]]
            noise = torch.randn(len(real), model.noise, generator=generator)
            for index, (_, optimizer) in enumerate(groups):  # the discriminator first, then the generator
                optimizer.zero_grad()
                fake = model.generator(noise)
                loss = _discriminator_loss(model, real, fake) if index == 0 else _generator_loss(model, fake)
                if proximal[index] is not None:
                    loss = loss + proximal[index]()
                loss.backward()
                optimizer.step()
        require_finite_loss(float(loss))


class TorchTrainer:
    """Trains a ``torch.nn.Module`` on one of :data:`federity.config.Objective`: class scores against labels,
    a reconstruction of its input, or next-token scores over token ids."""

    name = "torch"
    version = 1

    def fit(self, model: nn.Module, data: Dataset, params: TrainingParams, objective: str = "cross_entropy"
            ) -> dict[str, float]:
        """Train ``model`` in place for ``params.epochs`` epochs on ``objective``; return :meth:`evaluate`'s metrics
        on ``data`` after.

        With ``params.mu > 0`` each batch's loss also carries FedProx's proximal term ``(mu / 2) * ||w - w_start||^2``
        (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020), ``w_start`` the parameters as
        ``fit`` received them (the global model); with ``mu == 0`` no term is added and training is exactly plain
        training. The returned metrics are the objective's alone either way."""
        if objective == "adversarial":
            _fit_adversarial(model, data, params)
            return self.evaluate(model, data, objective)
        if data.edges is not None:
            _fit_graph(model, data, params, objective)
            return self.evaluate(model, data, objective)
        features, labels = _tensors(data)
        generator = torch.Generator().manual_seed(params.seed)
        optimizer = _optimizer(model, params)
        proximal = _Proximal(model, params.mu) if params.mu > 0 else None
        model.train()
        for _ in range(params.epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(labels), params.batch_size):
                batch = order[start:start + params.batch_size]
                optimizer.zero_grad()
                loss = _training_loss(objective, model(features[batch]), features[batch], labels[batch])
                if proximal is not None:
                    loss = loss + proximal()
                loss.backward()
                optimizer.step()
            require_finite_loss(loss.item())
        return self.evaluate(model, data, objective)

    def memory(self, model: nn.Module, data: Dataset, params: TrainingParams) -> MemoryEstimate:
        """Sizes from the module's state and from every leaf module's output on one sample (evaluation mode)."""
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        outputs: list[int] = []

        def measure(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                outputs.append(output.numel() * output.element_size())
            elif isinstance(output, (tuple, list)):  # a recurrent layer's (states, last state)
                for part in output:
                    measure(_module, _inputs, part)

        hooks = [m.register_forward_hook(measure) for m in model.modules() if not list(m.children())]
        try:
            model.eval()
            with torch.no_grad():
                if data.edges is None:
                    model(_tensors(data)[0][:1])
                else:  # a graph trains whole: its nodes are one batch
                    model(_tensors(data)[0], torch.from_numpy(data.edges))
                    params = dataclasses.replace(params, batch_size=data.n_samples)
        finally:
            for hook in hooks:
                hook.remove()
        per_example = sum(outputs) if data.edges is None else sum(outputs) // max(data.n_samples, 1)
        return estimate(weights, trainable, per_example, params, data.n_samples)

    def head(self, model: nn.Module) -> ProvedHead:
        """The last ``Linear`` layer's weight (``[classes, features]``) and bias."""
        if not (isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear) and model[-1].bias is not None):
            raise ProofError("proofs of training need a model that is an nn.Sequential ending in a Linear layer "
                             "with a bias (every zoo model is)", "use a zoo model, or build yours that way")
        index = len(model) - 1
        return ProvedHead(f"{index}.weight", f"{index}.bias", "out_in")

    def head_features(self, model: nn.Module, data: Dataset) -> np.ndarray:
        """``data`` as the last layer sees it: passed through every layer before it, frozen (evaluation mode, no
        gradients)."""
        self.head(model)
        features, _ = _tensors(data)
        body = model[:-1].eval()
        with torch.no_grad():
            return body(features).reshape(len(features), -1).numpy().astype(np.float64)

    def evaluate(self, model: nn.Module, data: Dataset, objective: str = "cross_entropy") -> dict[str, float]:
        """The objective's mean loss on ``data`` and, but for ``reconstruction``, the share it got right (classes,
        or next tokens), scored :data:`EVALUATION_BATCH` samples at a time (memory stays that of one batch); for
        ``adversarial``, both groups' losses on ``data`` and as many generated rows (noise seeded 0)."""
        features, labels = _tensors(data)
        model.eval()
        if data.edges is not None:  # a graph is scored whole
            with torch.no_grad():
                total, terms, right = _objective(objective, model(features, torch.from_numpy(data.edges)),
                                                 features, labels)
            return _metrics(objective, float(total), int(terms), int(right))
        if objective == "adversarial":
            with torch.no_grad():
                noise = torch.randn(len(features), model.noise, generator=torch.Generator().manual_seed(0))
                fake = model.generator(noise)
                discriminator, generator = _discriminator_loss(model, features, fake), _generator_loss(model, fake)
            return {"discriminator_loss": float(discriminator), "generator_loss": float(generator)}
        total, terms, right = 0.0, 0, 0
        with torch.no_grad():
            for i in range(0, len(labels), EVALUATION_BATCH):
                x, y = features[i:i + EVALUATION_BATCH], labels[i:i + EVALUATION_BATCH]
                batch_total, batch_terms, batch_right = _objective(objective, model(x), x, y)
                total, terms, right = total + float(batch_total), terms + int(batch_terms), right + int(batch_right)
        return _metrics(objective, total, terms, right)


def warm_up() -> None:
    """Take PyTorch's first optimiser step now, on a throwaway layer: it loads sympy and more (a second here), which
    a long-lived process (a site's agent) should not pay in its first round."""
    layer = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.zeros(1, 2)).sum().backward()
    optimizer.step()
