"""Reading a contributor's local dataset into features, labels and the table the data contract checks.

Formats: CSV and Parquet (one row per example, numeric feature columns, the label in one column), NPZ (arrays
``x`` and ``y``, or ``features`` and ``labels``; loaded without pickle), an image folder (``PATH/<class>/*.png``),
and a ``module:function`` loader stored in the repository (``task.loader``; code the repository's owner wrote,
resolved as :mod:`federity.builders` says). This runs at the site, and its errors can travel (an agent's logs
reach the owner's Prefect server): every bad input becomes a :class:`DataError` that names columns, counts,
shapes, dtypes and positions ("image 3 of 12"), never a value, a file name or a path, and that chains no
exception carrying one (the readers' own exceptions are dropped, not attached as ``__cause__`` or
``__context__``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from federity.builders import DATASET_LOADER, load_repository_function
from federity.errors import DataError

T = TypeVar("T")

FORMATS = "CSV (.csv), Parquet (.parquet), NPZ (.npz), an image folder (PATH/<class>/*.png|jpg), or a loader"
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class Dataset:
    """A local dataset: float32 features (images channel-first in [0, 1]), int64 labels, the contract's view; for
    a graph, its nodes are the examples and ``edges`` its ``[2, edges]`` int64 source and target node indices."""

    features: np.ndarray
    labels: np.ndarray
    table: pd.DataFrame
    source_format: str
    classes: list[str] = field(default_factory=list)
    edges: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        """Number of examples."""
        return len(self.labels)


@dataclass(frozen=True)
class TextColumn:
    """How a text task reads a table: its ``column`` of text, through ``tokenizer`` (:mod:`federity.text`), at
    most ``max_length`` tokens a row."""

    column: str
    tokenizer: Any
    max_length: int


def load_dataset(path: Path, *, label: str | None = "label", loader: str | None = None,
                 repo_root: Path | None = None, text: TextColumn | None = None) -> Dataset:
    """Read the dataset at ``path``; ``loader`` (``module:function`` stored in the repository at ``repo_root``)
    overrides the format. ``label=None`` reads unlabeled data (an autoencoder's, a language model's): every column
    is a feature, an NPZ file needs only ``x`` (or ``features``), and the labels are zeros. Bad input is a
    :class:`DataError` naming no path and no value."""
    path = Path(path)
    kind = _attempt(lambda: "dir" if path.is_dir() else "file" if path.exists() else None,
                    "the dataset path cannot be read", "check the permissions of --data")
    if kind is None:
        raise DataError("the dataset path does not exist", f"pass --data with one of: {FORMATS}")
    if loader:
        features, labels = _call_loader(loader, path, repo_root)
        dataset = _from_arrays(features, labels, label, "loader")
    elif kind == "dir":
        dataset = _images(path, label)
    elif path.suffix.lower() in (".csv", ".parquet", ".pq"):
        csv = path.suffix.lower() == ".csv"
        table = _read(pd.read_csv if csv else pd.read_parquet, path, "CSV" if csv else "Parquet")
        source = "csv" if csv else "parquet"
        dataset = _tabular(table, label, source) if text is None else _text(table, label, source, text)
    elif path.suffix.lower() == ".npz":
        dataset = _npz(path, label)
    else:
        raise DataError(f"unknown dataset format {path.suffix or '(no extension)'!r}", f"use {FORMATS}")
    if dataset.n_samples == 0:
        raise DataError("the dataset has no examples", "point --data at the site's training data")
    return dataset


def _attempt(action: Callable[[], T], message: str, hint: str, *, foreign: bool = False) -> T:
    """``action()``, or a :class:`DataError` with ``message`` if it raises. The reader's exception (which may
    name the file or quote a value) is dropped: the error is raised outside the handler, so it has neither
    ``__cause__`` nor ``__context__``. Federity's own :class:`DataError` passes through, unless the action is
    ``foreign`` (a repository's loader, whose errors are replaced too)."""
    try:
        return action()
    except DataError:
        if not foreign:
            raise
    except Exception:  # replaced below, outside the handler
        pass
    raise DataError(message, hint)


def _read(reader: Any, path: Path, kind: str) -> pd.DataFrame:
    table = _attempt(lambda: reader(path), f"the file is not readable as {kind}",
                     f"check that the --data file is valid {kind}")
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"the file is not readable as {kind}", f"check that the --data file is valid {kind}")
    return table


def _tabular(table: pd.DataFrame, label: str | None, kind: str) -> Dataset:
    if table.empty:
        raise DataError("the dataset has no examples", "point --data at the site's training data")
    if label is None:
        return _unlabeled(table, kind)
    if label not in table.columns:
        # column names are not listed: in a file without a header row they would be data
        raise DataError(f"the dataset has no label column {label!r} (it has {len(table.columns)} columns)",
                        "give the file a header row that names the label column as federity.yaml says")
    if list(table.columns).count(label) > 1:
        raise DataError(f"the dataset has {list(table.columns).count(label)} label columns {label!r}",
                        "keep one label column")
    features = table.drop(columns=[label])
    if features.shape[1] == 0:
        raise DataError("the dataset has no feature columns", "add the model's feature columns")
    non_numeric = [str(c) for c in features.columns if not _is_real(features[c])]
    if non_numeric:  # column names are the schema (the header row holds the label's name), not data
        raise DataError(f"feature column(s) {', '.join(non_numeric)} are not numeric",
                        "encode them as numbers at your site before training")
    # a missing or non-numeric label becomes -1, which the contract's label-set expectation reports
    labels = _attempt(lambda: pd.to_numeric(table[label], errors="coerce").fillna(-1).to_numpy(np.int64),
                      "the label column cannot be read as integers", "store the labels as integers")
    values = _attempt(lambda: features.to_numpy(np.float32), "the feature columns cannot be read as numbers",
                      "store the features as plain numbers (no missing-value markers of nullable types)")
    return Dataset(values, labels, table, kind)


def _text(table: pd.DataFrame, label: str | None, kind: str, text: TextColumn) -> Dataset:
    """A text task's table: token ids of its text column as features; the contract sees the label (when the task
    has one) and each row's token count, never the text."""
    from federity.text import token_ids

    if table.empty:
        raise DataError("the dataset has no examples", "point --data at the site's training data")
    for column, what in ((label, "label"), (text.column, "text")):
        if column is not None and list(table.columns).count(column) != 1:
            raise DataError(f"the dataset has {list(table.columns).count(column)} {what} columns {column!r}",
                            f"give the file one {what} column named as federity.yaml's task says")
    values = table[text.column]
    if not all(isinstance(v, str) for v in values):
        raise DataError(f"the text column {text.column!r} holds values that are not text (missing or numbers)",
                        "give every row its text, as a string")
    ids = _attempt(lambda: token_ids(list(values), text.tokenizer, text.max_length),
                   "the tokenizer could not read the text column", "check the text's encoding (UTF-8)")
    tokens = pd.DataFrame({"tokens": (ids != 0).sum(axis=1)})
    if label is None:
        return Dataset(ids.astype(np.float32), np.zeros(len(ids), np.int64), tokens, kind)
    labels = _attempt(lambda: pd.to_numeric(table[label], errors="coerce").fillna(-1).to_numpy(np.int64),
                      "the label column cannot be read as integers", "store the labels as integers")
    return Dataset(ids.astype(np.float32), labels, pd.DataFrame({label: labels, **tokens}), kind)


def _unlabeled(table: pd.DataFrame, kind: str) -> Dataset:
    """Every column a numeric feature; the labels zeros."""
    non_numeric = [str(c) for c in table.columns if not _is_real(table[c])]
    if non_numeric:
        raise DataError(f"feature column(s) {', '.join(non_numeric)} are not numeric",
                        "encode them as numbers at your site before training")
    values = _attempt(lambda: table.to_numpy(np.float32), "the feature columns cannot be read as numbers",
                      "store the features as plain numbers (no missing-value markers of nullable types)")
    return Dataset(values, np.zeros(len(values), np.int64), table, kind)


def _is_real(column: pd.Series) -> bool:
    """Whether a column holds plain booleans, integers or floats (not complex, text, dates or objects)."""
    return bool(pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_complex_dtype(column))


def _from_arrays(features: Any, labels: Any, label: str | None, kind: str) -> Dataset:
    x = _attempt(lambda: np.asarray(features), "the features are not one numeric array (ragged or mixed)",
                 "give every example the same shape, as numbers")
    y = _attempt(lambda: np.asarray(labels), "the labels are not one numeric array (ragged or mixed)",
                 "give one integer label per example")
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        which = "features" if x.dtype.kind not in "biuf" else "labels"
        raise DataError(f"the {which} have dtype kind {(x if which == 'features' else y).dtype.kind!r}, not numbers "
                        "(object arrays, text, dates and complex numbers are not loaded)", "store numeric arrays")
    if y.ndim != 1 or x.ndim == 0 or len(x) != len(y):
        raise DataError(f"features have shape {x.shape} but labels have shape {y.shape}",
                        "give one integer label per example")
    if len(y) == 0:
        raise DataError("the dataset has no examples", "point --data at the site's training data")
    if x.ndim not in (2, 3, 4) or 0 in x.shape:
        raise DataError(f"features have shape {x.shape}: expected (examples, features), sequences (examples, "
                        "steps, features) or images (examples, [channels,] height, width)",
                        "reshape the features at your site")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise DataError("the labels are not all integers", "give one integer label per example")
    with np.errstate(all="ignore"):
        x = x.astype(np.float32)
    if x.ndim == 2:
        table = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        if label is not None:
            table[label] = y
    else:
        table = _image_table(x, y, label)
    return Dataset(x, y.astype(np.int64), table, kind)


def _image_table(x: np.ndarray, y: np.ndarray, label: str | None) -> pd.DataFrame:
    """One row per image (or sequence): its label, size and value summary — never the values."""
    flat = x.reshape(len(x), -1)
    channels, height, width = x.shape[1:4] if x.ndim == 4 else (1, *x.shape[1:3])
    labels = {label: y} if label is not None else {}
    return pd.DataFrame({**labels, "height": height, "width": width, "channels": channels,
                         "pixel_min": flat.min(axis=1), "pixel_max": flat.max(axis=1),
                         "pixel_mean": flat.mean(axis=1)})


def _npz(path: Path, label: str | None) -> Dataset:
    def read() -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray] | set[str]:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if "edge_index" in keys and "x" in keys and (label is None or "y" in keys):  # a graph
                nodes = archive["x"]
                labels = archive["y"] if label is not None else np.zeros(len(nodes) if nodes.ndim else 0, np.int64)
                return nodes, labels, archive["edge_index"]
            plain = {"x", "y"} <= keys or (label is None and "x" in keys)
            names = ("x", "y") if plain else ("features", "labels")
            if label is None and names[0] in keys:  # unlabeled: the features alone, zeros as labels
                features = archive[names[0]]
                return features, np.zeros(len(features) if features.ndim else 0, np.int64)
            if not set(names) <= keys:
                return keys
            return archive[names[0]], archive[names[1]]

    pickled = False
    try:
        arrays = read()
    except Exception as exc:  # a pickled array is refused by name; anything else is just unreadable
        pickled = isinstance(exc, ValueError) and str(exc).startswith("Object arrays cannot be loaded")
        arrays = None
    if arrays is None:
        if pickled:
            raise DataError("the NPZ file holds object arrays (pickles), which Federity never loads",
                            "save numeric arrays only")
        raise DataError("the file is not readable as NPZ (not an archive of numeric arrays; a pickle is never loaded)",
                        "check that the --data file is a valid .npz")
    if isinstance(arrays, set):
        raise DataError(f"the NPZ file holds {len(arrays)} array(s), not x and y (or features and labels)",
                        "save the features as x and the labels as y")
    if len(arrays) == 3:
        return _graph(*arrays, label)
    return _from_arrays(arrays[0], arrays[1], label, "npz")


MAX_EDGES = 50_000_000


def _graph(nodes: Any, labels: Any, edges: Any, label: str | None) -> Dataset:
    """A graph's nodes as the examples (features ``x``, labels ``y``), its edges checked to name nodes it has; the
    contract sees each node's label and degree."""
    dataset = _from_arrays(nodes, labels, label, "npz")
    if dataset.features.ndim != 2:
        raise DataError(f"a graph's node features have shape {dataset.features.shape}: expected (nodes, features)",
                        "save x as one row of features per node")
    e = np.asarray(edges)
    if e.dtype.kind not in "iu" or e.ndim != 2 or e.shape[0] != 2 or e.shape[1] > MAX_EDGES:
        raise DataError(f"edge_index has shape {e.shape} and dtype kind {e.dtype.kind!r}: expected (2, edges) "
                        f"integers, at most {MAX_EDGES}", "save edge_index as two rows: source and target nodes")
    if e.size and (e.min() < 0 or e.max() >= dataset.n_samples):
        raise DataError(f"edge_index names nodes outside the graph's {dataset.n_samples}",
                        "number the nodes 0 to nodes - 1, as the rows of x")
    edges64 = e.astype(np.int64)
    degree = np.bincount(edges64.reshape(-1), minlength=dataset.n_samples)
    table = pd.DataFrame({**({label: dataset.labels} if label is not None else {}), "degree": degree})
    return Dataset(dataset.features, dataset.labels, table, "npz", edges=edges64)


def _images(root: Path, label: str | None) -> Dataset:
    from PIL import Image

    hint = "check the folder's permissions; arrange images as PATH/<class>/<image>.png"
    class_dirs = _attempt(lambda: sorted(d for d in root.iterdir() if d.is_dir()),
                          "the image folder cannot be listed", hint)
    if not class_dirs:
        raise DataError("the image folder has no class subfolders", "arrange images as PATH/<class>/<image>.png")
    names = [d.name for d in class_dirs]
    numeric = all(n.isascii() and n.isdecimal() for n in names)
    files: list[tuple[Path, int]] = []
    for index, directory in enumerate(class_dirs):
        listed = _attempt(lambda d=directory: sorted(f for f in d.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES),
                          f"class folder {index + 1} of {len(class_dirs)} cannot be listed", hint)
        files += [(f, int(directory.name) if numeric else index) for f in listed]
    if not files:
        raise DataError("the image folder holds no .png/.jpg/.jpeg/.bmp images", "add images under PATH/<class>/")

    def read(file: Path) -> Any:
        with Image.open(file) as image:
            image.load()
            return image.copy()

    images = []
    for position, (file, _) in enumerate(files):
        images.append(_attempt(lambda f=file: read(f), f"image {position + 1} of {len(files)} (in sorted order) "
                               "is not a readable image", "replace or remove the unreadable image at your site"))
    mode = "L" if all(i.mode in ("L", "1", "I;16") for i in images) else "RGB"
    sizes = {i.size for i in images}
    if len(sizes) > 1:
        raise DataError(f"the images come in {len(sizes)} different sizes", "resize them to one size at your site")
    pixels = _attempt(lambda: np.stack([np.asarray(i.convert(mode), dtype=np.float32) / 255.0 for i in images]),
                      f"the images cannot be converted to {mode} pixels", "store them as 8-bit grey or RGB images")
    x = pixels[:, None] if mode == "L" else pixels.transpose(0, 3, 1, 2)
    y = np.asarray([label_of for _, label_of in files], np.int64)
    return Dataset(x, y, _image_table(x, y, label), "images", [] if numeric else names)


def _call_loader(loader: str, path: Path, repo_root: Path | None) -> tuple[Any, Any]:
    if repo_root is None:
        raise DataError("a dataset loader runs only from inside its repository", "train inside the repository")
    function = load_repository_function(loader, repo_root, DATASET_LOADER)
    result = _attempt(lambda: function(path), f"the dataset loader {loader!r} failed",
                      "fix the loader in the repository (its error is not shown: it may quote the data)", foreign=True)
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise DataError(f"the dataset loader {loader!r} did not return (features, labels)",
                        "fix the loader in the repository")
    return result[0], result[1]
