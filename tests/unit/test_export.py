"""federity export: ONNX checked with onnxruntime against the framework, the framework's own formats loaded back
by the framework, safetensors byte for byte; every refusal leaves nothing at --out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federity.errors import ConfigError, WeightsError
from federity.identity import Wallet
from federity.repo import Repository
from federity.repo.export import sample_input
from federity.training import build_with_tensors
from federity.weights import get_framework, read_tensors

MODELS = {"logistic-regression": ["in_features=4"], "mlp": ["in_features=4", "hidden=6"],
          "cnn": ["in_channels=2", "num_classes=3"], "lstm": ["input_size=4", "hidden=5", "layers=2"],
          "gru": ["input_size=4", "hidden=5", "num_classes=3"]}


def _repo(tmp_path: Path, owner: Wallet, framework: str, model: str) -> Repository:
    repo, _ = Repository.init(tmp_path / f"{framework}-{model}", owner, name="export", framework=framework,
                              model=model, model_args=MODELS[model])
    return repo


def _inputs(model: str, batch: int) -> np.ndarray:
    # another batch size, image size and sequence length than the export's sample
    shape = {"cnn": (2, 12, 10), "lstm": (7, 4), "gru": (9, 4)}.get(model, (4,))
    return np.random.default_rng(5).normal(size=(batch, *shape)).astype(np.float32)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_an_onnx_export_gives_the_frameworks_outputs_for_any_batch(tmp_path: Path, owner: Wallet, framework: str,
                                                                   model: str) -> None:
    import onnxruntime

    repo = _repo(tmp_path, owner, framework, model)
    result = repo.export("HEAD", "onnx", tmp_path / "model.onnx")
    assert result.onnx_max_abs_diff is not None and result.onnx_max_abs_diff <= 1e-4
    adapter = get_framework(framework)
    built = build_with_tensors(repo.config(), repo.root, read_tensors(repo.store.read(repo.head()), "weights"))
    inputs = _inputs(model, 5)
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: adapter.onnx_input(inputs)})[0]
    np.testing.assert_allclose(got, adapter.predict(built, inputs), rtol=1e-4, atol=1e-5)
    assert got.shape == (5, 3 if model in ("cnn", "gru") else 2)


@pytest.mark.parametrize(("framework", "model", "args"), [
    ("torch", "resnet", ["in_channels=1", "num_classes=3", "depth=18", "width=8"]),
    ("torch", "efficientnet", ["in_channels=1", "num_classes=3", "width_percent=25", "depth_percent=25"]),
    ("tensorflow", "mobilenet", ["in_channels=1", "num_classes=3", "width_percent=35"]),
])
def test_an_image_network_exports_to_onnx_with_free_image_sides(tmp_path: Path, owner: Wallet, framework: str,
                                                                model: str, args: list[str]) -> None:
    import onnxruntime

    repo, _ = Repository.init(tmp_path / "repo", owner, name="export", framework=framework, model=model,
                              model_args=args)
    path = repo.export("HEAD", "onnx", tmp_path / "model.onnx").path
    adapter = get_framework(framework)
    built = build_with_tensors(repo.config(), repo.root, read_tensors(repo.store.read(repo.head()), "weights"))
    inputs = np.random.default_rng(6).normal(size=(2, 1, 48, 40)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: adapter.onnx_input(inputs)})[0]
    np.testing.assert_allclose(got, adapter.predict(built, inputs), rtol=1e-4, atol=1e-5)


def test_an_onnx_export_onnxruntime_cannot_run_is_refused_and_nothing_is_written(tmp_path: Path,
                                                                                  owner: Wallet) -> None:
    """tf2onnx leaves Keras EfficientNet's input normalisation as graph inputs the model does not feed."""
    repo, _ = Repository.init(tmp_path / "repo", owner, name="export", framework="tensorflow", model="efficientnet",
                              model_args=["in_channels=1", "num_classes=3"])
    (tmp_path / "out").mkdir()
    with pytest.raises(WeightsError, match=r"onnxruntime cannot run the ONNX export \(ValueError: Required inputs"):
        repo.export("HEAD", "onnx", tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_torch_export_program_loads_without_the_models_code(tmp_path: Path, owner: Wallet) -> None:
    import torch

    repo = _repo(tmp_path, owner, "torch", "mlp")
    path = repo.export("HEAD", "torch", tmp_path / "model.pt2").path
    program = torch.export.load(path)
    inputs = _inputs("mlp", 7)
    built = build_with_tensors(repo.config(), repo.root, read_tensors(repo.store.read(repo.head()), "weights"))
    np.testing.assert_array_equal(program.module()(torch.from_numpy(inputs)).detach().numpy(),
                                  get_framework("torch").predict(built, inputs))


def test_a_keras_export_loads_back_with_keras(tmp_path: Path, owner: Wallet) -> None:
    import keras

    repo = _repo(tmp_path, owner, "tensorflow", "cnn")
    path = repo.export("HEAD", "keras", tmp_path / "model.keras").path
    loaded = keras.models.load_model(path)
    inputs = _inputs("cnn", 4)
    built = build_with_tensors(repo.config(), repo.root, read_tensors(repo.store.read(repo.head()), "weights"))
    adapter = get_framework("tensorflow")
    np.testing.assert_array_equal(np.asarray(loaded(adapter.onnx_input(inputs))), adapter.predict(built, inputs))


def test_a_safetensors_export_is_the_stored_weights_byte_for_byte(tmp_path: Path, owner: Wallet) -> None:
    repo = _repo(tmp_path, owner, "torch", "logistic-regression")
    result = repo.export("HEAD", "safetensors", tmp_path / "w.safetensors")
    assert result.path.read_bytes() == repo.store.read(repo.head())
    assert result.to_json()["commit"] == repo.head() and result.onnx_max_abs_diff is None


@pytest.mark.parametrize(("framework", "fmt", "message"), [
    ("torch", "keras", "a torch model does not export as keras"),
    ("tensorflow", "torch", "a tensorflow model does not export as torch"),
    ("torch", "pickle", "unknown export format 'pickle'"),
])
def test_a_format_the_framework_does_not_write_is_refused_and_nothing_is_written(
        tmp_path: Path, owner: Wallet, framework: str, fmt: str, message: str) -> None:
    repo = _repo(tmp_path, owner, framework, "mlp")
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match=message):
        repo.export("HEAD", fmt, tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_existing_file_is_not_overwritten_and_a_failed_export_leaves_nothing(
        tmp_path: Path, owner: Wallet, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path, owner, "torch", "mlp")
    (tmp_path / "out").mkdir()
    taken = tmp_path / "out" / "taken.onnx"
    taken.write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        repo.export("HEAD", "onnx", taken)
    assert taken.read_text() == "mine"
    with pytest.raises(ConfigError, match=r"the directory of .* does not exist"):
        repo.export("HEAD", "onnx", tmp_path / "missing" / "m.onnx")

    adapter = type(get_framework("torch"))

    def broken_export(self, model, format, path, sample) -> None:
        path.write_bytes(b"half an onnx file")
        raise ConfigError("the exporter failed", "nothing to do")

    monkeypatch.setattr(adapter, "export", broken_export)
    with pytest.raises(WeightsError, match=r"the torch exporter could not write this model as onnx \(ConfigError: "
                                           r"the exporter failed"):
        repo.export("HEAD", "onnx", tmp_path / "out" / "m.onnx")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["taken.onnx"]


def test_a_model_whose_arguments_give_no_input_shape_needs_one(tmp_path: Path, owner: Wallet) -> None:
    config = _repo(tmp_path, owner, "torch", "mlp").config()
    config.model["args"] = {"width": 3}
    with pytest.raises(ConfigError, match="pass --input-shape"):
        sample_input(config, None)
    assert sample_input(config, (3, 8, 8)).shape == (3, 3, 8, 8)
    with pytest.raises(ConfigError, match="is not a shape of one example"):
        sample_input(config, (3, 0))
