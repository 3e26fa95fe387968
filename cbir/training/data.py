"""Training data: labelled images (class folders, root + CSV, MedMNIST arrays) or explicit tuples.

Whatever the source, training sees one ``TrainingData``: a list of image
sources (file paths or in-memory pictures), and either a class per image or
a table of index tuples (pairs ``a, b, same`` or triplets ``anchor,
positive, negative``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cbir.io.images import is_image_path
from cbir.io.medmnist import medmnist_splits, read_medmnist

ImageSource = Path | Image.Image
KINDS = ("labels", "pairs", "triplets")


@dataclass
class TrainingData:
    """Images and their supervision.

    ``labels`` (kind ``labels``) holds a class index per image; ``tuples``
    (kinds ``pairs`` and ``triplets``) holds rows of image indices, pairs
    with a third column 1 (same) or 0 (different). ``validation`` optionally
    names images kept for validation only (queries against the training
    images), such as MedMNIST's ``val`` split.
    """

    sources: list[ImageSource]
    names: list[str]
    kind: str
    origin: str
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    tuples: np.ndarray | None = None
    validation: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind of training data {self.kind!r}")
        if len(self.sources) != len(self.names):
            raise ValueError("every image needs a name")
        if self.kind == "labels" and (self.labels is None or len(self.labels) != len(self.sources)):
            raise ValueError("labelled training data needs one label per image")
        if self.kind != "labels" and self.tuples is None:
            raise ValueError(f"{self.kind} training data needs its tuples")

    def __len__(self) -> int:
        return len(self.sources)

    def summary(self) -> dict:
        """What the data was, for the encoder file."""
        summary = {"origin": self.origin, "kind": self.kind, "images": len(self.sources)}
        if self.kind == "labels":
            summary["classes"] = len(self.class_names)
            summary["class_names"] = self.class_names[:50]
        else:
            summary[self.kind] = len(self.tuples)
        if self.validation is not None:
            summary["validation_images"] = int(len(self.validation))
        return summary

    def without(self, broken: set[int]) -> "TrainingData":
        """The same data with the images ``broken`` (indices) left out, tuples that use them too."""
        if not broken:
            return self
        keep = np.array([i for i in range(len(self.sources)) if i not in broken], dtype=np.int64)
        new_index = np.full(len(self.sources), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        tuples = None
        if self.tuples is not None:
            columns = 2 if self.kind == "pairs" else 3
            usable = (new_index[self.tuples[:, :columns]] >= 0).all(axis=1)
            tuples = self.tuples[usable].copy()
            tuples[:, :columns] = new_index[tuples[:, :columns]]
        validation = None
        if self.validation is not None:
            validation = new_index[self.validation]
            validation = validation[validation >= 0]
        return TrainingData(
            [self.sources[i] for i in keep], [self.names[i] for i in keep], self.kind, self.origin,
            self.labels[keep] if self.labels is not None else None, self.class_names, tuples, validation,
        )


def load_training_data(data: str | Path, labels_csv: str | Path | None = None, split: str = "train") -> TrainingData:
    """Read ``data``: a folder of class subfolders, a root with ``labels_csv``, a MedMNIST ``.npz``
    (``split`` trains; its ``val`` split, when present, validates), or a CSV/text file of pairs or triplets."""
    data = Path(data).expanduser()
    if not data.exists():
        raise FileNotFoundError(f"{data} does not exist")
    if labels_csv is not None:
        if not data.is_dir():
            raise ValueError(f"--labels needs DATA to be the image root folder; {data} is a file")
        return read_labels_csv(data, labels_csv)
    if data.is_dir():
        return read_class_folders(data)
    if data.suffix.lower() == ".npz":
        return read_medmnist_training(data, split)
    if data.suffix.lower() in (".csv", ".txt", ".tsv"):
        return read_tuples_file(data)
    raise ValueError(
        f"cannot tell what {data} holds: give a folder of class subfolders, a folder with --labels CSV, "
        "a MedMNIST .npz file, or a .csv/.txt file of pairs (a,b,same) or triplets (anchor,positive,negative)"
    )


def read_class_folders(root: str | Path) -> TrainingData:
    """Every subfolder of ``root`` is a class; its images (searched recursively) are its members."""
    root = Path(root).expanduser()
    sources: list[ImageSource] = []
    labels: list[int] = []
    class_names: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
        if not files:
            continue
        class_names.append(folder.name)
        sources += files
        labels += [len(class_names) - 1] * len(files)
    if len(class_names) < 2:
        raise ValueError(
            f"{root} needs at least two subfolders of images (one per class) to train on; "
            "or give --labels CSV with a class per file"
        )
    return TrainingData(sources, [str(p.relative_to(root)) for p in sources], "labels", str(root),
                        np.array(labels, dtype=np.int64), class_names)


def read_labels_csv(root: str | Path, labels_csv: str | Path) -> TrainingData:
    """Images under ``root`` labelled by a CSV of ``filename,class[,...]`` rows (a header row is allowed).

    A ``class_name`` column, when the header has one, names the classes.
    """
    root, labels_csv = Path(root).expanduser(), Path(labels_csv).expanduser()
    if not labels_csv.is_file():
        raise FileNotFoundError(f"labels file {labels_csv} does not exist")
    with open(labels_csv, newline="") as stream:
        rows = [row for row in csv.reader(stream) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{labels_csv} is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    name_column = header.index("class_name") if "class_name" in header else None
    if not (root / rows[0][0].strip()).is_file():
        rows = rows[1:]
    if any(len(row) < 2 for row in rows):
        raise ValueError(f"{labels_csv}: every row needs at least filename,class")
    keys = [row[1].strip() for row in rows]
    numeric = all(key.lstrip("-").isdigit() for key in keys)
    distinct = sorted(set(keys), key=int if numeric else str)
    index_of = {key: i for i, key in enumerate(distinct)}
    names_of = {row[1].strip(): row[name_column].strip() for row in rows if name_column is not None and len(row) > name_column}
    if len(distinct) < 2:
        raise ValueError(f"{labels_csv} has a single class; training needs at least two")
    sources = [root / row[0].strip() for row in rows]
    return TrainingData(sources, [row[0].strip() for row in rows], "labels", f"{root} + {labels_csv.name}",
                        np.array([index_of[key] for key in keys], dtype=np.int64),
                        [names_of.get(key, key) for key in distinct])


def read_medmnist_training(path: str | Path, split: str = "train", validation_split: str = "val") -> TrainingData:
    """A MedMNIST split to train on; the ``validation_split`` (when the file has it) is kept for validation."""
    train = read_medmnist(path, split)
    labels = train.class_labels()
    sources: list[ImageSource] = [train.image(i) for i in range(len(train))]
    names = [f"{split}[{i}]" for i in range(len(train))]
    validation = None
    if validation_split in medmnist_splits(path) and validation_split != split:
        held = read_medmnist(path, validation_split)
        validation = np.arange(len(sources), len(sources) + len(held))
        sources += [held.image(i) for i in range(len(held))]
        names += [f"{validation_split}[{i}]" for i in range(len(held))]
        labels = np.concatenate([labels, held.class_labels()])
    classes = int(labels.max()) + 1
    return TrainingData(sources, names, "labels", f"{Path(path).name} ({split})", labels,
                        [str(i) for i in range(classes)], validation=validation)


def read_tuples_file(path: str | Path) -> TrainingData:
    """Pairs (``a,b,same`` with same 1 or 0) or triplets (``anchor,positive,negative``), one per line.

    Paths are relative to the file's folder; commas, tabs or spaces separate
    fields; a header line is allowed. Rows naming missing files are dropped
    and counted in the origin.
    """
    path = Path(path).expanduser()
    text = path.read_text()
    dialect_delimiter = "," if "," in text else ("\t" if "\t" in text else " ")
    rows = [
        [cell.strip() for cell in row if cell.strip()]
        for row in csv.reader(text.splitlines(), delimiter=dialect_delimiter)
    ]
    rows = [row for row in rows if row and not row[0].startswith("#")]
    if rows and not (path.parent / rows[0][0]).exists():
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{path} holds no pairs or triplets")
    if any(len(row) != 3 for row in rows):
        raise ValueError(f"{path}: every line needs three fields (a,b,same for pairs or anchor,positive,negative for triplets)")
    is_pairs = all(row[2] in ("0", "1") for row in rows)
    columns = 2 if is_pairs else 3
    index_of: dict[str, int] = {}
    tuples = []
    missing = 0
    for row in rows:
        files = row[:columns]
        if not all((path.parent / name).is_file() for name in files):
            missing += 1
            continue
        ids = [index_of.setdefault(name, len(index_of)) for name in files]
        tuples.append(ids + ([int(row[2])] if is_pairs else []))
    if not tuples:
        raise ValueError(f"none of the files named in {path} exist (paths are relative to {path.parent})")
    names = list(index_of)
    origin = str(path) + (f" ({missing} rows naming missing files dropped)" if missing else "")
    kind = "pairs" if is_pairs else "triplets"
    table = np.array(tuples, dtype=np.int64)
    if kind == "pairs" and (table[:, 2].min() == table[:, 2].max()):
        raise ValueError(f"{path}: the pairs are all {'same' if table[0, 2] else 'different'}; training needs both")
    return TrainingData([path.parent / name for name in names], names, kind, origin, tuples=table)
