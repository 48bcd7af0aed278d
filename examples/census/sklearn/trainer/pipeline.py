"""The census scikit-learn pipeline: raw 13-column frame in, income bracket out.

Every step is a scikit-learn, numpy or pandas callable, so the pickled pipeline loads and
predicts where only those libraries are installed (not this package):

    reindex(13 columns) ─► categoricals: missing→"" ─► str ─► lower ─► strip ─► "?"→"" ─► one-hot
      (absent → NaN)    └► numerics:     to float ─► median imputation
                                               └──────────────► HistGradientBoostingClassifier
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from trainer import data


def _categorical_steps() -> Pipeline:
    """Normalise free-form strings the way the serving contract promises (case, spaces, ?)."""
    return Pipeline(
        [
            ("missing", SimpleImputer(strategy="constant", fill_value="")),
            ("as_text", FunctionTransformer(np.asarray, kw_args={"dtype": str})),
            ("lower", FunctionTransformer(np.strings.lower)),
            ("strip", FunctionTransformer(np.strings.strip)),
            # SimpleImputer only matches strings inside object arrays.
            ("as_object", FunctionTransformer(np.asarray, kw_args={"dtype": object})),
            (
                "question_mark",
                SimpleImputer(missing_values="?", strategy="constant", fill_value=""),
            ),
            ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )


def _numeric_steps() -> Pipeline:
    """Numbers may arrive as JSON strings ("25") or be absent (NaN/None)."""
    return Pipeline(
        [
            ("as_float", FunctionTransformer(np.asarray, kw_args={"dtype": np.float64})),
            ("impute", SimpleImputer(strategy="median")),
        ]
    )


def build(
    max_iter: int = 100, learning_rate: float = 0.1, max_leaf_nodes: int = 31, seed: int = 42
) -> Pipeline:
    """An unfitted pipeline taking a DataFrame with any subset of the 13 feature columns.

    Absent columns are added as missing (the ``reindex`` step), extra columns are dropped.
    """
    columns = ColumnTransformer(
        [
            ("categorical", _categorical_steps(), list(data.CATEGORICAL_COLUMNS)),
            ("numeric", _numeric_steps(), list(data.NUMERIC_COLUMNS)),
        ]
    )
    classifier = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=max_leaf_nodes,
        early_stopping=False,  # a fixed size keeps runs reproducible and comparable
        random_state=seed,
    )
    return Pipeline(
        [
            (
                "columns",
                FunctionTransformer(
                    pd.DataFrame.reindex, kw_args={"columns": list(data.FEATURE_COLUMNS)}
                ),
            ),
            ("features", columns),
            ("classifier", classifier),
        ]
    )
