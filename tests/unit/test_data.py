"""Reading local datasets in every supported format; errors name schema and counts, never data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from federity.data import load_dataset
from federity.errors import DataError
from tests.conftest import git

CANARY = "CANARY-c0ffee"


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "label": [0, 1, 0]})


def test_csv_and_parquet_give_float32_features_and_int64_labels(tmp_path: Path) -> None:
    _frame().to_csv(tmp_path / "d.csv", index=False)
    _frame().to_parquet(tmp_path / "d.parquet")
    for name, kind in (("d.csv", "csv"), ("d.parquet", "parquet")):
        data = load_dataset(tmp_path / name)
        assert data.source_format == kind and data.n_samples == 3
        assert data.features.dtype == np.float32 and data.features.shape == (3, 2)
        assert data.labels.tolist() == [0, 1, 0] and list(data.table.columns) == ["a", "b", "label"]


def test_a_null_label_becomes_minus_one_for_the_contract_to_report(tmp_path: Path) -> None:
    _frame().assign(label=[0, None, 1]).to_csv(tmp_path / "d.csv", index=False)
    assert load_dataset(tmp_path / "d.csv").labels.tolist() == [0, -1, 1]


def test_npz_tabular_and_images(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x=np.ones((5, 3)), y=np.arange(5) % 2)
    data = load_dataset(tmp_path / "t.npz")
    assert data.features.shape == (5, 3) and list(data.table.columns) == ["f0", "f1", "f2", "label"]
    np.savez(tmp_path / "i.npz", features=np.zeros((4, 1, 6, 6)), labels=np.array([0, 1, 2, 3]))
    images = load_dataset(tmp_path / "i.npz")
    assert images.features.shape == (4, 1, 6, 6)
    assert {"height", "width", "channels", "pixel_mean"} <= set(images.table.columns)


def test_an_npz_holding_a_pickle_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", x=np.array([{"evil": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="never loads"):
        load_dataset(tmp_path / "p.npz")


@pytest.mark.parametrize("classes", [["0", "1"], ["benign", "malignant"]])
def test_an_image_folder_is_read_channel_first_in_unit_range(tmp_path: Path, classes: list[str]) -> None:
    for index, name in enumerate(classes):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 6), color=60 * (index + 1)).save(tmp_path / "img" / name / f"{i}.png")
    data = load_dataset(tmp_path / "img")
    assert data.features.shape == (4, 1, 6, 8) and data.features.max() <= 1.0
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.classes == ([] if classes[0] == "0" else classes)
    assert data.table["height"].tolist() == [6] * 4


def test_a_repository_loader_is_called_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "my_loader.py").write_text(
        "import numpy as np\ndef load(path):\n    return np.ones((3, 2)), np.array([0, 1, 1])\n")
    git(tmp_path / "repo", "init", "--quiet")
    git(tmp_path / "repo", "add", "my_loader.py")
    git(tmp_path / "repo", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "loader")
    data = load_dataset(tmp_path, loader="my_loader:load", repo_root=tmp_path / "repo")
    assert data.source_format == "loader" and data.n_samples == 3


@pytest.mark.parametrize(("write", "match"), [
    (lambda p: _frame().drop(columns=["label"]).to_csv(p, index=False), "no label column .label. \\(it has 2 columns"),
    (lambda p: _frame().assign(b=[CANARY, "x", "y"]).to_csv(p, index=False), "column\\(s\\) b are not numeric"),
    (lambda p: _frame().iloc[:0].to_csv(p, index=False), "no examples"),
    (lambda p: p.write_bytes(CANARY.encode() + b",x\n1,2\n"), "no label column .label. \\(it has 2 columns"),
])
def test_bad_datasets_say_what_is_wrong_without_showing_data(tmp_path: Path, write, match: str) -> None:
    path = tmp_path / "d.csv"
    write(path)
    with pytest.raises(DataError, match=match) as info:
        load_dataset(path)
    assert CANARY not in str(info.value)


def test_images_of_different_sizes_are_an_error_that_names_no_file(tmp_path: Path) -> None:
    (tmp_path / "img" / "0").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "img" / "0" / f"{CANARY}.png")
    Image.new("L", (4, 4)).save(tmp_path / "img" / "0" / "b.png")
    with pytest.raises(DataError, match="2 different sizes") as info:
        load_dataset(tmp_path / "img")
    assert CANARY not in str(info.value)


def test_missing_path_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="the dataset path does not exist") as info:
        load_dataset(tmp_path / CANARY / "absent.csv")
    assert CANARY not in str(info.value)  # a site's paths may be telling; errors can travel in Prefect logs
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unknown dataset format '\.xlsx'"):
        load_dataset(tmp_path / "d.xlsx")
