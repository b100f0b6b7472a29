"""The plugin registry: built-ins and entry points, names enforced, versioned ids, nothing imported early."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from federity.aggregation import STRATEGIES, get_strategy, installed_strategies
from federity.chain.ledger import LEDGERS
from federity.errors import ConfigError, UnknownPluginError
from federity.plugins import PluginId, Registry
from federity.training import TRAINERS
from federity.weights.frameworks import FRAMEWORKS

ROOT = Path(__file__).resolve().parents[2]


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """A fresh importable module holding ``source``; returns its name."""
    name = f"federity_test_plugin_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: str, entries: dict[str, str]) -> None:
    """An installed distribution (a ``.dist-info`` on ``sys.path``) declaring ``entries`` in ``group``."""
    info = tmp_path / "site" / f"federity_test_dist_{uuid.uuid4().hex}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {info.name.split('-')[0]}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    monkeypatch.syspath_prepend(str(info.parent))


PLUGINS = """
class Sum:
    name = "sum"
    version = 2

class SumV1:
    name = "sum"
    version = 1

class Liar:
    name = "fedmedian"
    version = 1

class Unversioned:
    name = "plain"
"""


BUILT_IN_STRATEGIES = ["bulyan", "fedadagrad", "fedadam", "fedavg", "fedavgm", "fedmedian", "fedyogi", "krum",
                       "multi-krum", "trimmed-mean"]


def test_an_unknown_name_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownPluginError, match="unknown aggregation strategy 'geomed'") as info:
        get_strategy("geomed")
    assert info.value.hint == f"use one of: {', '.join(BUILT_IN_STRATEGIES)}"
    assert installed_strategies() == BUILT_IN_STRATEGIES


@pytest.mark.parametrize("spec", ["", "FedAvg", "fedavg@", "fedavg@0", "fedavg@x", "../fedavg", "a:b", 5, None,
                                  ["fedavg"]])
def test_an_id_that_is_not_name_or_name_at_version_is_refused(spec: object) -> None:
    with pytest.raises(UnknownPluginError, match="is not a valid aggregation strategy id") as info:
        get_strategy(spec)  # type: ignore[arg-type]
    assert ", ".join(BUILT_IN_STRATEGIES) in info.value.hint


def test_a_plugin_whose_name_differs_from_its_registered_name_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    registry: Registry[object] = Registry("strategy", "federity.test-none", {"sum": f"{module}:Liar"})
    with pytest.raises(UnknownPluginError, match=r"registered as 'sum' .* says its name is 'fedmedian'"):
        registry.load("sum")
    assert "sum" not in registry


def test_a_plugin_without_an_integer_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    registry: Registry[object] = Registry("strategy", "federity.test-none", {"plain": f"{module}:Unversioned"})
    with pytest.raises(UnknownPluginError, match="'plain' declares no version"):
        registry.load("plain")


def test_a_plain_name_gives_the_current_version_and_name_at_version_exactly_that_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    registry: Registry[object] = Registry("strategy", "federity.test-none",
                                          {"sum": f"{module}:Sum", "sum@1": f"{module}:SumV1"})
    assert registry.load("sum").__name__ == "Sum"
    assert registry.load("sum@2").__name__ == "Sum"
    assert registry.load("sum@1").__name__ == "SumV1"
    assert registry.versions("sum") == [1, 2]
    assert registry.names() == ["sum"]
    with pytest.raises(UnknownPluginError, match="strategy 'sum' has no version 3 installed") as info:
        registry.load("sum@3")
    assert info.value.hint == "installed versions: sum@1, sum@2"


def test_an_entry_registered_under_a_version_must_be_that_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    registry: Registry[object] = Registry("strategy", "federity.test-none", {"sum@1": f"{module}:Sum"})
    with pytest.raises(UnknownPluginError, match="registered as 'sum@1' says it is version 2"):
        registry.load("sum@1")
    with pytest.raises(UnknownPluginError, match="'sum' has no current version installed"):
        registry.load("sum")


def test_a_plugin_that_does_not_take_the_given_parameters_is_a_config_error_naming_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    registry: Registry[object] = Registry("strategy", "federity.test-none", {"sum": f"{module}:Sum"})
    assert type(registry.with_parameters("sum", None)).__name__ == "Sum"
    with pytest.raises(ConfigError, match="strategy sum cannot be made with parameters alpha, beta: ") as info:
        registry.with_parameters("sum", {"alpha": 1, "beta": 2})
    assert info.value.hint == "pass only the parameters it documents"


def test_a_strategys_past_versions_stay_installed_and_an_unknown_version_lists_them() -> None:
    assert type(get_strategy("fedavg@2")) is type(get_strategy("fedavg"))
    assert get_strategy("fedavg@1").version == 1
    with pytest.raises(UnknownPluginError, match="aggregation strategy 'fedavg' has no version 3") as info:
        get_strategy("fedavg@3")
    assert info.value.hint == "installed versions: fedavg@1, fedavg@2"


def test_entry_points_of_installed_packages_add_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    group = f"federity.test-{uuid.uuid4().hex}"
    _distribution(tmp_path, monkeypatch, group, {"sum": f"{module}:Sum", "sum@1": f"{module}:SumV1"})
    registry: Registry[object] = Registry("strategy", group, {})
    assert registry.names() == ["sum"]
    assert registry.load("sum@1").__name__ == "SumV1"
    assert type(registry.create("sum")).__name__ == "Sum"


def test_an_entry_point_cannot_take_over_a_built_in_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, PLUGINS)
    group = f"federity.test-{uuid.uuid4().hex}"
    _distribution(tmp_path, monkeypatch, group, {"fedmedian": f"{module}:Liar"})
    registry: Registry[object] = Registry("strategy", group,
                                          {"fedmedian": "federity.aggregation.fedmedian:FedMedian"})
    assert registry.load("fedmedian").__module__ == "federity.aggregation.fedmedian"


def test_a_plugin_that_cannot_be_imported_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(tmp_path, monkeypatch, "import federity_no_such_module\n")
    registry: Registry[object] = Registry("strategy", "federity.test-none",
                                          {"broken": f"{module}:X", "gone": f"{module}_missing:X"})
    for name in ("broken", "gone"):
        with pytest.raises(UnknownPluginError, match=f"the strategy '{name}' cannot be loaded from"):
            registry.load(name)


def test_every_built_in_plugin_loads_and_declares_its_registered_name() -> None:
    for registry in (FRAMEWORKS, TRAINERS, STRATEGIES, LEDGERS):
        for name in registry.names():
            plugin = registry.load(name)
            assert plugin.name == name and plugin.version >= 1  # type: ignore[attr-defined]


def test_the_built_ins_are_declared_as_entry_points_in_pyproject() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for registry in (FRAMEWORKS, TRAINERS, STRATEGIES, LEDGERS):
        assert declared[registry.group] == registry._builtins


def test_plugin_ids_parse_and_print() -> None:
    assert STRATEGIES.parse("trimmed-mean@12") == PluginId("trimmed-mean", 12)
    assert str(PluginId("fedavg", 1)) == "fedavg@1" and str(PluginId("fedavg")) == "fedavg"


def test_importing_the_registries_imports_no_plugin_and_no_framework() -> None:
    script = textwrap.dedent("""
        import json, sys
        import federity.plugins, federity.aggregation, federity.weights, federity.training, federity.chain.ledger
        before = sorted(m for m in ("torch", "federity.aggregation.fedavg", "federity.weights.torch_adapter",
                                    "federity.training.torch_trainer", "federity.chain.embedded") if m in sys.modules)
        from federity.aggregation import get_strategy
        get_strategy("fedavg")
        after = sorted(m for m in ("torch", "federity.aggregation.fedavg", "federity.aggregation.fedmedian")
                       if m in sys.modules)
        print(json.dumps([before, after]))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [[], ["federity.aggregation.fedavg"]]


@pytest.mark.parametrize("setting", [5, None, ["embedded"], "rpc", "embedded@2"])
def test_a_ledger_setting_that_names_no_ledger_is_refused(setting: object) -> None:
    from federity.chain.ledger import open_ledger

    with pytest.raises(UnknownPluginError, match="ledger") as info:
        open_ledger(setting)  # type: ignore[arg-type]
    assert "embedded, rpc" in info.value.hint
