"""The contract between a compiled file and its server: results, specs and constants.

The compiled file carries its contract as metadata ``mlengine.compiled`` (JSON: inputs, flags,
outputs, the source model file's sha256). :func:`load_compiled` refuses a file compiled from
another model file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

COMPILED_FILE = "model.onnx"
SPEC_KEY = "mlengine.compiled"
#: Fed to a string input for a missing value: a category no fitted encoder knows.
MISSING_STRING = "\x00mlengine:missing"
_ABSENT: Any = object()  # a field the instance does not have

Tolerance = Literal["labels", "probabilities", "values"]


@dataclass(frozen=True)
class CompileResult:
    """``path``: the written ``model.onnx``, ``None`` when not compiled; ``reason``: why
    not, or what the verification showed; ``rows_checked``: probe rows compared."""

    path: Path | None
    reason: str
    rows_checked: int = 0


@dataclass(frozen=True)
class ColumnSpec:
    """One DataFrame column: its kind and the request forms the compiled graph serves."""

    name: str
    kind: Literal["number", "string"]
    input: str = ""  # the graph input (skl2onnx makes names C identifiers)
    missing: bool = True  # missing in some instances of a request
    alone: tuple[str, ...] = ("absent", "null")  # missing in every instance of a request
    categories: tuple[str, ...] | None = None  # when set, only these strings are served


@dataclass(frozen=True)
class OutputSpec:
    """Which ONNX output gives the predictions, and how: ``column`` of a [N, k] output,
    labels mapped to ``classes`` (JSON values) or numbers as floats."""

    output: int
    column: int | None = None
    classes: tuple[Any, ...] | None = None
    as_float: bool = False


@dataclass(frozen=True)
class CompiledSpec:
    """The contract of a compiled file, stored in its metadata (see the module docstring)."""

    framework: str  # the version's framework (what load_predictor was asked for)
    serves: str  # the original predictor's framework, reported by the compiled one
    source: str  # model file name in the model directory
    sha256: str
    layout: Literal["columns", "matrix", "booster"]
    predict: OutputSpec
    tolerance: Tolerance
    probabilities: OutputSpec | None = None
    columns: tuple[ColumnSpec, ...] = ()
    width: int = 0
    names: tuple[str, ...] | None = None  # booster feature names (objects)
    missing: bool = True  # matrix: null values served
    probe: list[Any] | None = None  # the original's probe_instances()
    verified: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CompiledSpec:
        raw = json.loads(text)

        def output(value: dict[str, Any] | None) -> OutputSpec | None:
            return (
                None
                if value is None
                else OutputSpec(**{**value, "classes": _tuple(value["classes"])})
            )

        def column(value: dict[str, Any]) -> ColumnSpec:
            return ColumnSpec(
                **{
                    **value,
                    "alone": tuple(value["alone"]),
                    "categories": _tuple(value["categories"]),
                }
            )

        predict, probabilities = output(raw.pop("predict")), output(raw.pop("probabilities"))
        assert predict is not None
        columns, names = tuple(map(column, raw.pop("columns"))), _tuple(raw.pop("names"))
        return cls(
            **raw, predict=predict, probabilities=probabilities, columns=columns, names=names
        )


def _tuple(values: list[Any] | None) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)


class _NotCompiled(Exception):
    """Why a model is not compiled; becomes ``CompileResult(None, reason, rows_checked)``."""

    def __init__(self, reason: str, rows_checked: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rows_checked = rows_checked
