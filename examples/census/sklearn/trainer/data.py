"""The UCI Adult (census income) files as pandas frames.

Reads the original UCI files (``adult.data``, ``adult.test``) from local paths or any URI
pandas/fsspec understands: ``", "``-separated values, ``?`` for missing, a
``|1x3 Cross validator`` first line and trailing ``.`` on the test labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CSV_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "gender", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income_bracket",
)  # fmt: skip
LABEL_COLUMN = "income_bracket"
LABELS = ("<=50K", ">50K")
CATEGORICAL_COLUMNS = (
    "workclass", "education", "marital_status", "occupation", "relationship", "race",
    "gender", "native_country",
)  # fmt: skip
NUMERIC_COLUMNS = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
#: The 13 model inputs (``fnlwgt``, a sampling weight, is not a feature).
FEATURE_COLUMNS = CATEGORICAL_COLUMNS + NUMERIC_COLUMNS


def _read(path: str) -> pd.DataFrame:
    return pd.read_csv(
        path,
        header=None,
        names=list(CSV_COLUMNS),
        skipinitialspace=True,  # the UCI separator is ", "
        na_values=["?"],
        keep_default_na=False,  # only "?" means missing
        comment="|",  # adult.test's "|1x3 Cross validator" line
        skip_blank_lines=True,
        dtype=dict.fromkeys((*CATEGORICAL_COLUMNS, LABEL_COLUMN), str),
    )


def load(paths: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Features (the 13 :data:`FEATURE_COLUMNS`) and label strings of all ``paths``.

    Raises ``ValueError`` when a label is not one of :data:`LABELS` (after stripping the
    test file's trailing ``.``).
    """
    frame = pd.concat([_read(p) for p in paths], ignore_index=True)
    labels = frame[LABEL_COLUMN].str.strip().str.rstrip(".")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown income brackets {unknown[:5]}; expected one of {LABELS}")
    return frame[list(FEATURE_COLUMNS)], labels.to_numpy(dtype=object)
