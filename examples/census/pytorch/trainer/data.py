"""The UCI Adult (census income) files and the fixed feature vocabularies.

Reads the original UCI files as published (``adult.data``, ``adult.test``): values separated
by ``", "``, ``?`` for a missing value, a ``|1x3 Cross validator`` first line and labels ending
with ``.`` in the test file. The hosted "cleaned" CSVs of the Cloud samples read the same way.

Vocabularies are fixed lists rather than learnt from the data so that every rank of a
distributed job, every trial and the exported serving graph agree on the indices. Index 0 of
every categorical is "unknown": missing, misspelt or unseen values all land there.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

CSV_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income_bracket",
)
LABEL_COLUMN = "income_bracket"
LABELS = ("<=50K", ">50K")
UNKNOWN_INDEX = 0

#: Normalised (lower-case, no surrounding spaces) vocabularies; position + 1 is the index.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "workclass": (
        "private", "self-emp-not-inc", "self-emp-inc", "federal-gov", "local-gov",
        "state-gov", "without-pay", "never-worked",
    ),
    "education": (
        "bachelors", "some-college", "11th", "hs-grad", "prof-school", "assoc-acdm",
        "assoc-voc", "9th", "7th-8th", "12th", "masters", "1st-4th", "10th", "doctorate",
        "5th-6th", "preschool",
    ),
    "marital_status": (
        "married-civ-spouse", "divorced", "never-married", "separated", "widowed",
        "married-spouse-absent", "married-af-spouse",
    ),
    "gender": ("female", "male"),
    "relationship": (
        "wife", "own-child", "husband", "not-in-family", "other-relative", "unmarried",
    ),
    "race": ("white", "asian-pac-islander", "amer-indian-eskimo", "other", "black"),
    "occupation": (
        "tech-support", "craft-repair", "other-service", "sales", "exec-managerial",
        "prof-specialty", "handlers-cleaners", "machine-op-inspct", "adm-clerical",
        "farming-fishing", "transport-moving", "priv-house-serv", "protective-serv",
        "armed-forces",
    ),
    "native_country": (
        "united-states", "cambodia", "england", "puerto-rico", "canada", "germany",
        "outlying-us(guam-usvi-etc)", "india", "japan", "greece", "south", "china", "cuba",
        "iran", "honduras", "philippines", "italy", "poland", "jamaica", "vietnam", "mexico",
        "portugal", "ireland", "france", "dominican-republic", "laos", "ecuador", "taiwan",
        "haiti", "columbia", "hungary", "guatemala", "nicaragua", "scotland", "thailand",
        "yugoslavia", "el-salvador", "trinadad&tobago", "peru", "hong", "holand-netherlands",
    ),
}  # fmt: skip

#: One-hot (indicator) columns, then embedded columns: the order of the model's id matrix.
INDICATOR_COLUMNS = ("workclass", "education", "marital_status", "gender", "relationship", "race")
EMBEDDING_COLUMNS = ("occupation", "native_country")
CATEGORICAL_COLUMNS = INDICATOR_COLUMNS + EMBEDDING_COLUMNS
NUMERIC_COLUMNS = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
#: The 13 serving inputs, in the order of the census sample's JSON serving signature.
FEATURE_COLUMNS = CATEGORICAL_COLUMNS + NUMERIC_COLUMNS

_HEADER_PREFIX = "|"
_MISSING = "?"
_INDEX = {name: {v: i + 1 for i, v in enumerate(vocab)} for name, vocab in VOCABULARIES.items()}


@dataclass(frozen=True)
class CensusTable:
    """Parsed rows, column-wise.

    ``categorical`` maps each categorical column to an object array of the raw (space-stripped)
    strings, ``None`` where missing; ``numeric`` maps each numeric column to float32 with NaN
    where missing; ``labels`` holds 0 (``<=50K``) or 1 (``>50K``).
    """

    categorical: dict[str, np.ndarray]
    numeric: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def category_ids(self) -> np.ndarray:
        """int64 ``[N, 8]`` vocabulary indices in :data:`CATEGORICAL_COLUMNS` order."""
        return np.stack([encode(name, self.categorical[name]) for name in CATEGORICAL_COLUMNS], 1)

    def numeric_matrix(self) -> np.ndarray:
        """float32 ``[N, 5]`` raw numerics in :data:`NUMERIC_COLUMNS` order (NaN = missing)."""
        return np.stack([self.numeric[name] for name in NUMERIC_COLUMNS], 1)


def normalise(value: str | None) -> str:
    """The serving graph's string normalisation: lower-case, surrounding spaces removed.

    A value with an inner space can match no vocabulary entry, so it becomes ``""``
    (unknown), exactly as the ONNX graph treats it.
    """
    tokens = (value or "").lower().split(" ")
    words = [t for t in tokens if t]
    return words[0] if len(words) == 1 else ""


def encode(column: str, values: Iterable[str | None]) -> np.ndarray:
    """Vocabulary indices (int64) of ``values`` for ``column``; unknown or missing → 0."""
    index = _INDEX[column]
    return np.fromiter((index.get(normalise(v), UNKNOWN_INDEX) for v in values), np.int64)


@contextmanager
def _open_text(path: str) -> Iterator[io.TextIOBase]:
    """Open a local path with ``open`` and a URI with a scheme (``gs://``…) with fsspec."""
    if "://" in path:
        import fsspec  # only remote URIs need it, so a local run works without it

        with fsspec.open(path, "rt", encoding="utf-8") as stream:
            yield stream
    else:
        with open(path, encoding="utf-8") as stream:
            yield stream


def read_rows(paths: Sequence[str]) -> Iterator[list[str]]:
    """Yield the 15 stripped fields of every data row of ``paths``, in order.

    Skips blank lines and the test file's ``|1x3 Cross validator`` header, strips the test
    labels' trailing ``.``. Raises ``ValueError`` naming the file and line of a malformed row.
    """
    for path in paths:
        with _open_text(path) as stream:
            for number, line in enumerate(stream, start=1):
                text = line.strip()
                if not text or text.startswith(_HEADER_PREFIX):
                    continue
                fields = [f.strip() for f in text.split(",")]
                if len(fields) != len(CSV_COLUMNS):
                    raise ValueError(
                        f"{path}:{number}: expected {len(CSV_COLUMNS)} comma-separated fields, "
                        f"got {len(fields)}"
                    )
                fields[-1] = fields[-1].rstrip(".")
                yield fields


def _number(text: str) -> float:
    return math.nan if text in ("", _MISSING) else float(text)


def load(paths: Sequence[str]) -> CensusTable:
    """Read ``paths`` (local paths or fsspec URIs) into one :class:`CensusTable`."""
    columns: dict[str, list[str]] = {name: [] for name in CSV_COLUMNS}
    for fields in read_rows(paths):
        for name, value in zip(CSV_COLUMNS, fields, strict=True):
            columns[name].append(value)
    labels = []
    for value in columns[LABEL_COLUMN]:
        if value not in LABELS:
            raise ValueError(f"unknown income bracket {value!r}; expected one of {LABELS}")
        labels.append(LABELS.index(value))
    categorical = {
        name: np.array([None if v in ("", _MISSING) else v for v in columns[name]], dtype=object)
        for name in CATEGORICAL_COLUMNS
    }
    numeric = {
        name: np.array([_number(v) for v in columns[name]], dtype=np.float32)
        for name in NUMERIC_COLUMNS
    }
    return CensusTable(categorical, numeric, np.array(labels, dtype=np.int64))
