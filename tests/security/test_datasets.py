"""Bad input in a site's dataset: every reader raises a DataError that names neither the dataset's path nor a
value from it, and chains no exception that does (a site's paths and values can reach the owner's Prefect
server through an agent's logs)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from federity.data import load_dataset
from federity.errors import DataError
from tests.conftest import git

SECRET_DIR = "Patient-Jane-Doe-1957"
CANARY = "CANARY-5ec2e7"
CANARY_NUMBER = "918273.645"


def _assert_leaks_nothing(error: DataError) -> None:
    assert error.__cause__ is None and error.__context__ is None, "a chained exception can carry the path"
    for text in (str(error), repr(error.args), error.message, error.hint):
        assert SECRET_DIR not in text and CANARY not in text and CANARY_NUMBER not in text


@pytest.fixture
def site(tmp_path: Path) -> Path:
    directory = tmp_path / SECRET_DIR
    directory.mkdir()
    return directory


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), color=90).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_folder(site: Path, bad: bytes) -> Path:
    root = site / "images"
    for label in ("0", "1"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            (root / label / f"{i}.png").write_bytes(_png_bytes())
    (root / "1" / f"{CANARY}.png").write_bytes(bad)
    return root


@pytest.mark.parametrize("bad", [
    pytest.param(CANARY.encode() * 20, id="not-an-image"),
    pytest.param(_png_bytes()[:40], id="truncated-png"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + CANARY.encode(), id="png-header-then-junk"),
    pytest.param(b"", id="empty-file"),
])
def test_an_unreadable_image_is_a_data_error_naming_its_position_only(site: Path, bad: bytes) -> None:
    with pytest.raises(DataError, match=r"image 5 of 5 \(in sorted order\) is not a readable image") as info:
        load_dataset(_image_folder(site, bad))
    _assert_leaks_nothing(info.value)


def test_a_directory_posing_as_an_image_is_a_data_error(site: Path) -> None:
    root = _image_folder(site, _png_bytes())
    (root / "0" / f"{CANARY}-dir.png").mkdir()
    with pytest.raises(DataError, match="is not a readable image") as info:
        load_dataset(root)
    _assert_leaks_nothing(info.value)


def _write(site: Path, name: str, content: bytes) -> Path:
    (site / name).write_bytes(content)
    return site / name


def _npz_with_corrupt_member(site: Path) -> Path:
    path = site / "d.npz"
    np.savez(path, x=np.ones((4, 3)), y=np.arange(4) % 2)
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY")
    data[start + 10:start + 60] = CANARY.encode().ljust(50, b"!")
    path.write_bytes(bytes(data))
    return path


def _npz_of_text(site: Path) -> Path:
    np.savez(site / "d.npz", x=np.array([[CANARY, CANARY_NUMBER]] * 3), y=np.array([0, 1, 0]))
    return site / "d.npz"


def _zip_without_arrays(site: Path) -> Path:
    with zipfile.ZipFile(site / "d.npz", "w") as archive:
        archive.writestr(f"{CANARY}.txt", CANARY)
    return site / "d.npz"


CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("csv-binary-junk", lambda s: _write(s, "d.csv", b"\xff\xfe\x00" + CANARY.encode() * 50), "not readable as CSV"),
    ("csv-ragged-rows", lambda s: _write(s, "d.csv", f"a,label\n1,0\n{CANARY},{CANARY_NUMBER},1,2\n".encode()),
     "not readable as CSV"),
    ("csv-empty-file", lambda s: _write(s, "d.csv", b""), "not readable as CSV"),
    ("csv-header-only", lambda s: _write(s, "d.csv", b"a,label\n"), "no examples"),
    ("csv-text-feature", lambda s: _write(s, "d.csv", f"a,label\n{CANARY},0\n{CANARY_NUMBER}x,1\n".encode()),
     r"feature column\(s\) a are not numeric"),
    ("csv-complex-feature", lambda s: _write(s, "d.csv", b"a,label\n1+2j,0\n3+4j,1\n"), "not numeric"),
    ("parquet-junk", lambda s: _write(s, "d.parquet", b"PAR1" + CANARY.encode() * 10 + b"PAR1"),
     "not readable as Parquet"),
    ("parquet-truncated", lambda s: _truncated_parquet(s), "not readable as Parquet"),
    ("npz-junk", lambda s: _write(s, "d.npz", CANARY.encode() * 10), "not readable as NPZ"),
    ("npz-zip-header-then-junk", lambda s: _write(s, "d.npz", b"PK\x03\x04" + CANARY.encode() * 10),
     "not readable as NPZ"),
    ("npz-corrupt-member", _npz_with_corrupt_member, "not readable as NPZ"),
    ("npz-text-arrays", _npz_of_text, "not numbers"),
    ("npz-no-arrays", _zip_without_arrays, r"holds 1 array\(s\), not x and y"),
    ("npz-empty", lambda s: _savez(s, x=np.zeros((0, 3)), y=np.zeros(0, np.int64)), "no examples"),
    ("npz-label-mismatch", lambda s: _savez(s, x=np.zeros((3, 2)), y=np.zeros((3, 2))), "labels have shape"),
    ("npz-fractional-labels", lambda s: _savez(s, x=np.zeros((3, 2)), y=np.array([0.5, 1.0, 0.0])),
     "not all integers"),
    ("npz-one-dimensional", lambda s: _savez(s, x=np.zeros(3), y=np.zeros(3, np.int64)), r"features have shape \(3,\)"),
    ("npz-datetimes", lambda s: _savez(s, x=np.array(["2020-01-01"] * 3, "datetime64[D]").reshape(3, 1),
                                       y=np.zeros(3, np.int64)), "not numbers"),
]


def _savez(site: Path, **arrays: np.ndarray) -> Path:
    np.savez(site / "d.npz", **arrays)
    return site / "d.npz"


def _truncated_parquet(site: Path) -> Path:
    pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1], CANARY: [3.0, 4.0]}).to_parquet(site / "d.parquet")
    data = (site / "d.parquet").read_bytes()
    (site / "d.parquet").write_bytes(data[: len(data) // 2])
    return site / "d.parquet"


@pytest.mark.parametrize(("write", "match"), [(w, m) for _, w, m in CASES], ids=[i for i, _, _ in CASES])
def test_bad_files_are_data_errors_without_paths_values_or_chained_exceptions(site: Path, write, match: str) -> None:
    path = write(site)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path)
    _assert_leaks_nothing(info.value)


@pytest.mark.parametrize(("body", "match"), [
    (f"    raise ValueError('cannot parse ' + str(path) + ' {CANARY}')", "the dataset loader 'loader:load' failed"),
    (f"    return [[1.0, 2.0], [{CANARY_NUMBER}]], [0, 1]", "not one numeric array"),
    (f"    return [['{CANARY}', 'x']], [0]", "not numbers"),
    ("    return 42", r"did not return \(features, labels\)"),
    ("    from federity.errors import DataError\n    raise DataError(str(path), str(path))",
     "the dataset loader 'loader:load' failed"),
    ("    return [], []", "no examples"),
])
def test_a_repository_loader_returning_bad_data_is_a_clean_data_error(site: Path, tmp_path: Path, body: str,
                                                                      match: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "loader.py").write_text(f"def load(path):\n{body}\n")
    git(repo, "init", "--quiet")
    git(repo, "add", "loader.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "loader")
    with pytest.raises(DataError, match=match) as info:
        load_dataset(site, loader="loader:load", repo_root=repo)
    _assert_leaks_nothing(info.value)


def _valid_file(kind: str) -> bytes:
    buffer = io.BytesIO()
    frame = pd.DataFrame({"a": [1.5, 2.5, 3.5], "b": [4.0, 5.0, 6.0], "label": [0, 1, 0]})
    if kind == "csv":
        return frame.to_csv(index=False).encode()
    if kind == "parquet":
        frame.to_parquet(buffer)
    elif kind == "npz":
        np.savez(buffer, x=frame[["a", "b"]].to_numpy(), y=frame["label"].to_numpy())
    else:
        return _png_bytes()
    return buffer.getvalue()


_VALID = {kind: _valid_file(kind) for kind in ("csv", "parquet", "npz", "png")}


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(_VALID)), data=st.data())
def test_mutated_files_load_or_fail_with_a_clean_data_error_only(kind: str, data: st.DataObject) -> None:
    content = bytearray(_VALID[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(content) - 1))
        content[position] = data.draw(st.integers(0, 255))
    content = content[: data.draw(st.integers(0, len(content)))] if data.draw(st.booleans()) else content
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / SECRET_DIR
        if kind == "png":
            (site / "0").mkdir(parents=True)
            (site / "0" / "a.png").write_bytes(_png_bytes())
            (site / "0" / f"{CANARY}.png").write_bytes(bytes(content))
            path = site
        else:
            site.mkdir()
            path = site / f"{CANARY}.{kind}"
            path.write_bytes(bytes(content))
        try:
            load_dataset(path)
        except DataError as error:
            _assert_leaks_nothing(error)
