"""JSON instances on their way into a model, shared by the framework loaders.

A request's ``instances`` is a non-empty JSON list in one of two forms (spec §3.1–3.2):

* **rows**: every instance is a value that is not an object — a list of feature values
  (``[39, 77516.0, 13]``), a nested list (a tensor) or a scalar (``"some text"``);
* **objects**: every instance is an object keyed by input or feature name
  (``{"age": 39, "education": "Bachelors"}``).

Mixing the forms in one request is an error naming the first instance that differs. Each
loader's module docstring says how the two forms become its framework's inputs; the helpers
here do the parts they share: checking the list, refusing unknown field names (a misspelt
``hours-per-week`` would otherwise silently become "missing"), building a numeric matrix,
and reading a model's ``input_example.json`` for the probe run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlengine.domain.errors import FailedPrecondition, InvalidArgument

#: A model directory may ship example instances; the probe run before READY uses them.
INPUT_EXAMPLE_FILE = "input_example.json"

Form = Literal["rows", "objects"]


def check_instances(instances: object) -> list[Any]:
    """``instances`` itself when it is a non-empty list, else :class:`InvalidArgument`."""
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("instances must be a non-empty JSON list", field="instances")
    return instances


def instance_form(instances: Sequence[Any]) -> Form:
    """``"objects"`` when every instance is a JSON object, ``"rows"`` when none is."""
    objects = isinstance(instances[0], Mapping)
    for index, instance in enumerate(instances):
        if isinstance(instance, Mapping) != objects:
            first = "an object" if objects else "not an object"
            raise InvalidArgument(
                f"instance {index} and instance 0 differ in form (instance 0 is {first}); "
                "the instances of one request are either all objects keyed by input name "
                "or all rows",
                field=f"instances[{index}]",
            )
    return "objects" if objects else "rows"


def check_fields(instances: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    """Refuse a field that is not one of ``names``, naming the instance and the field."""
    known = set(names)
    for index, instance in enumerate(instances):
        unknown = sorted(set(instance) - known)
        if unknown:
            raise InvalidArgument(
                f"instance {index} has unknown field(s) {unknown}; the model's inputs are "
                f"{sorted(known)}",
                field=f"instances[{index}].{unknown[0]}",
            )


def feature_matrix(
    instances: Sequence[Any], *, names: Sequence[str] | None, width: int | None
) -> npt.NDArray[np.float64]:
    """A float64 ``[len(instances), width]`` matrix from rows or from objects.

    Objects need ``names`` (the model's feature names): each row is the instance's values
    in that order, an absent field or ``null`` being NaN (missing). Rows are lists of
    ``width`` numbers (``null`` is NaN, numbers given as strings are parsed).
    """
    rows: Sequence[Any] = instances
    if instance_form(instances) == "objects":
        if not names:
            raise InvalidArgument(
                "the model does not record feature names, so instances cannot be objects; "
                f"send each instance as a list of {width if width else 'its'} numbers",
                field="instances[0]",
            )
        check_fields(instances, names)
        rows = [[instance.get(name) for name in names] for instance in instances]
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.ndim != 2 or (width is not None and matrix.shape[1] != width):
        raise _bad_row(rows, names, width)
    return matrix


def _bad_row(rows: Sequence[Any], names: Sequence[str] | None, width: int | None) -> Exception:
    """The error for the first row that is not a list of ``width`` numbers."""
    expected = f"{width} numbers" if width is not None else "numbers"
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            return InvalidArgument(
                f"instance {index} must be a list of {expected}, got {type(row).__name__}",
                field=f"instances[{index}]",
            )
        if (width is not None and len(row) != width) or len(row) != len(rows[0]):
            return InvalidArgument(
                f"instance {index} has {len(row)} values; the model takes {expected}",
                field=f"instances[{index}]",
            )
        for position, value in enumerate(row):
            try:
                float(value if value is not None else "nan")
            except (TypeError, ValueError):
                where = f".{names[position]}" if names else f"[{position}]"
                return InvalidArgument(
                    f"instance {index}: {where.lstrip('.')} must be a number, got {value!r}",
                    field=f"instances[{index}]{where}",
                )
    return InvalidArgument(f"instances must be lists of {expected}", field="instances")


def read_input_example(model_dir: Path) -> list[Any] | None:
    """The instances of ``model_dir/input_example.json``, or ``None`` when there is none.

    The file holds a JSON list of instances, or a request body ``{"instances": [...]}``.
    A file that is neither is a :class:`FailedPrecondition` naming it.
    """
    path = model_dir / INPUT_EXAMPLE_FILE
    if not path.is_file():
        return None
    try:
        example = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FailedPrecondition(f"{path} is not readable JSON: {exc}") from exc
    if isinstance(example, dict) and "instances" in example:
        example = example["instances"]
    if not isinstance(example, list) or not example:
        raise FailedPrecondition(
            f"{path} must hold a non-empty JSON list of instances (or a request body "
            '{"instances": [...]}); fix the file or remove it'
        )
    return example


def filled_value(dims: Sequence[int], fill: Any) -> Any:
    """A nested list of shape ``dims`` holding ``fill`` (``fill`` itself for no dims)."""
    if not dims:
        return fill
    return [filled_value(dims[1:], fill) for _ in range(dims[0])]
