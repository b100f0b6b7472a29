"""Reading a contributor's local dataset into features, labels and the table the data contract checks.

Formats: CSV and Parquet (one row per example, numeric feature columns, the label in one column), NPZ (arrays
``x`` and ``y``, or ``features`` and ``labels``; loaded without pickle), an image folder (``PATH/<class>/*.png``),
and a ``module:function`` loader that lives in the repository. This runs at the site: error messages name
columns, counts, shapes and dtypes, never a value or a file inside the dataset.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from federity.errors import DataError

FORMATS = "CSV (.csv), Parquet (.parquet), NPZ (.npz), an image folder (PATH/<class>/*.png|jpg), or a loader"
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class Dataset:
    """A local dataset: float32 features (images channel-first in [0, 1]), int64 labels, the contract's view."""

    features: np.ndarray
    labels: np.ndarray
    table: pd.DataFrame
    source_format: str
    classes: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        """Number of examples."""
        return len(self.labels)


def load_dataset(path: Path, *, label: str = "label", loader: str | None = None,
                 repo_root: Path | None = None) -> Dataset:
    """Read the dataset at ``path``; ``loader`` (``module:function`` in ``repo_root``) overrides the format."""
    path = Path(path)
    if not path.exists():
        raise DataError("the dataset path does not exist", f"pass --data with one of: {FORMATS}")
    if loader:
        features, labels = _call_loader(loader, path, repo_root)
        dataset = _from_arrays(features, labels, label, "loader")
    elif path.is_dir():
        dataset = _images(path, label)
    elif path.suffix.lower() == ".csv":
        dataset = _tabular(_read(pd.read_csv, path, "CSV"), label, "csv")
    elif path.suffix.lower() in (".parquet", ".pq"):
        dataset = _tabular(_read(pd.read_parquet, path, "Parquet"), label, "parquet")
    elif path.suffix.lower() == ".npz":
        dataset = _npz(path, label)
    else:
        raise DataError(f"unknown dataset format {path.suffix or '(no extension)'!r}", f"use {FORMATS}")
    if dataset.n_samples == 0:
        raise DataError("the dataset has no examples", "point --data at the site's training data")
    return dataset


def _read(reader: Any, path: Path, kind: str) -> pd.DataFrame:  # errors never name the path: it may travel
    try:
        return reader(path)
    except Exception as exc:
        raise DataError(f"the file is not readable as {kind} ({type(exc).__name__})",
                        f"check that the --data file is valid {kind}") from None


def _tabular(table: pd.DataFrame, label: str, kind: str) -> Dataset:
    if table.empty:
        raise DataError("the dataset has no examples", "point --data at the site's training data")
    if label not in table.columns:
        # column names are not listed: in a file without a header row they would be data
        raise DataError(f"the dataset has no label column {label!r} (it has {len(table.columns)} columns)",
                        "give the file a header row that names the label column as federity.yaml says")
    features = table.drop(columns=[label])
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DataError(f"feature column(s) {', '.join(non_numeric)} are not numeric",
                        "encode them as numbers at your site before training")
    # a missing or non-numeric label becomes -1, which the contract's label-set expectation reports
    labels = pd.to_numeric(table[label], errors="coerce").fillna(-1).to_numpy(np.int64)
    return Dataset(features.to_numpy(np.float32), labels, table, kind)


def _from_arrays(features: Any, labels: Any, label: str, kind: str) -> Dataset:
    x, y = np.asarray(features), np.asarray(labels)
    if x.dtype == object or y.dtype == object:
        raise DataError("the dataset holds object arrays, which Federity does not load", "store numeric arrays")
    if len(x) != len(y) or y.ndim != 1:
        raise DataError(f"features have {len(x)} examples but labels have shape {y.shape}",
                        "give one integer label per example")
    x = x.astype(np.float32)
    if x.ndim == 2:
        table = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        table[label] = y
    else:
        table = _image_table(x, y, label)
    return Dataset(x, y.astype(np.int64), table, kind)


def _image_table(x: np.ndarray, y: np.ndarray, label: str) -> pd.DataFrame:
    """One row per image: its label, size and pixel summary — never the pixels."""
    flat = x.reshape(len(x), -1)
    channels, height, width = x.shape[1:4] if x.ndim == 4 else (1, *x.shape[1:3])
    return pd.DataFrame({label: y, "height": height, "width": width, "channels": channels,
                         "pixel_min": flat.min(axis=1), "pixel_max": flat.max(axis=1),
                         "pixel_mean": flat.mean(axis=1)})


def _npz(path: Path, label: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            names = ("x", "y") if {"x", "y"} <= keys else ("features", "labels")
            if not set(names) <= keys:
                raise DataError(f"the NPZ file holds arrays {', '.join(sorted(keys))}, not x and y",
                                "save the features as x and the labels as y")
            return _from_arrays(archive[names[0]], archive[names[1]], label, "npz")
    except ValueError:
        raise DataError("the NPZ file holds object arrays (pickles), which Federity never loads",
                        "save numeric arrays only") from None
    except OSError:
        raise DataError("the file is not readable as NPZ", "check that the --data file is a valid .npz") from None


def _images(root: Path, label: str) -> Dataset:
    from PIL import Image

    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not class_dirs:
        raise DataError("the image folder has no class subfolders", "arrange images as PATH/<class>/<image>.png")
    names = [d.name for d in class_dirs]
    numeric = all(n.isdigit() for n in names)
    images, labels = [], []
    for index, directory in enumerate(class_dirs):
        for file in sorted(f for f in directory.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES):
            with Image.open(file) as image:
                images.append(image.copy())
            labels.append(int(directory.name) if numeric else index)
    if not images:
        raise DataError("the image folder holds no .png/.jpg/.jpeg/.bmp images", "add images under PATH/<class>/")
    mode = "L" if all(i.mode in ("L", "1", "I;16") for i in images) else "RGB"
    sizes = {i.size for i in images}
    if len(sizes) > 1:
        raise DataError(f"the images come in {len(sizes)} different sizes", "resize them to one size at your site")
    pixels = np.stack([np.asarray(i.convert(mode), dtype=np.float32) / 255.0 for i in images])
    x = pixels[:, None] if mode == "L" else pixels.transpose(0, 3, 1, 2)
    y = np.asarray(labels, np.int64)
    return Dataset(x, y, _image_table(x, y, label), "images", [] if numeric else names)


def _call_loader(loader: str, path: Path, repo_root: Path | None) -> tuple[Any, Any]:
    if repo_root is None or ":" not in loader:
        raise DataError(f"loader {loader!r} must be module:function in the repository", "fix task.loader")
    module_name, _, function_name = loader.partition(":")
    root = str(Path(repo_root).resolve())
    sys.path.insert(0, root)
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"cannot load the dataset loader {loader!r}: {type(exc).__name__}",
                        "check that the module is in the repository and defines that function") from None
    finally:
        sys.path.remove(root)
    try:
        result = function(path)
        features, labels = result
    except Exception as exc:
        raise DataError(f"the dataset loader {loader!r} failed ({type(exc).__name__}) or did not return "
                        "(features, labels)", "fix the loader in the repository") from None
    return features, labels
