"""Model outputs on their way out: one JSON-ready prediction per instance (spec §3.3).

* An array (or anything numpy can read) whose first dimension is the batch gives row ``i``
  to instance ``i``: a scalar for ``[N]``, a list for ``[N, k]``.
* A mapping of such arrays (several named outputs) gives each instance an object keyed by
  output name. Every output must share the batch dimension.
* Values become plain Python: numpy scalars and arrays → ``int``/``float``/``bool``/``str``/
  lists, ``bytes`` → ``{"b64": "<base64>"}`` (the v1 convention for binary values). NaN stays
  a float (``orjson`` writes it as ``null``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlengine.domain.errors import Internal


def json_ready(value: Any) -> Any:
    """``value`` with every numpy type, bytes, tuple and mapping made plain JSON data.

    Raises :class:`Internal` for an object JSON cannot carry (the model returned it).
    """
    if isinstance(value, np.generic):  # before float/str: np.float64 and np.str_ subclass them
        return json_ready(value.item())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.ndarray):
        return _array_rows(value)
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    raise Internal(f"the model returned a {type(value).__name__}, which JSON cannot carry")


def _array_rows(array: np.ndarray[Any, Any]) -> Any:
    """``tolist()``, walking it again only where it may hold bytes or odd objects."""
    rows = array.tolist()
    if array.dtype.kind in "OSV":
        return json_ready(rows)
    return rows


def batch_rows(output: Any, count: int, name: str | None = None) -> list[Any]:
    """Split a batch ``output`` (an array or a mapping of arrays) into ``count`` predictions.

    Raises :class:`Internal` when an output is not batch-major, naming it and its shape.
    """
    if isinstance(output, Mapping):
        columns = {str(key): batch_rows(value, count, str(key)) for key, value in output.items()}
        return [{key: rows[index] for key, rows in columns.items()} for index in range(count)]
    what = f"output {name!r}" if name else "output"
    try:
        array = np.asarray(output)
    except ValueError as exc:  # ragged lists of arrays
        raise Internal(f"the model's {what} is not one array: {exc}") from exc
    if array.ndim == 0 or array.shape[0] != count:
        raise Internal(
            f"the model's {what} has shape {list(array.shape)}; expected its first (batch) "
            f"dimension to be the {count} instance(s): outputs had differing sizes in the "
            "batch (outer) dimension"
        )
    rows = _array_rows(array)
    assert isinstance(rows, list)
    return rows
