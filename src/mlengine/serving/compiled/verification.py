"""Verification: the original and a compiled candidate answer the same probe requests.

**Probe set** (``rows`` instances, ``seed``): the caller's ``probe_rows`` (else the model
directory's ``input_example.json``), then synthetic rows. Each categorical column samples the
fitted encoders' categories plus an unknown value; each numeric column samples around the
fitted imputer/scaler statistics (mean ± 2 scales, whole numbers included, the statistics and
the fitted minima, maxima and bin edges themselves). Where a tree ensemble (scikit-learn
trees, HistGradientBoosting, XGBoost, LightGBM) reads the inputs directly, every split
threshold is probed at the threshold and two float32 steps either side. Missing values (an
absent field and ``null``) are probed wherever the original accepts them.

**Verification**: the original and the compiled model predict the same requests; success
needs identical labels on every row, probabilities within 1e-5 absolute, other numbers within
1e-5 relative (of the larger of the value and the outputs' root mean square). Anything else —
or a conversion error — returns ``CompileResult(path=None, reason=…)``; only I/O errors in
``out_dir`` raise. The one known gap: a float32 graph cannot separate inputs closer to a split
threshold than one float32 step (~6e-8 relative), and the probes stop two steps away.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.errors import MlEngineError
from mlengine.serving.compiled.conversion import _Facts, _Target
from mlengine.serving.compiled.predictor import CompiledPredictor
from mlengine.serving.compiled.spec import (
    _ABSENT,
    ColumnSpec,
    CompiledSpec,
    Tolerance,
    _NotCompiled,
)
from mlengine.serving.predictor import Predictor

PROBE_ROWS = 512
PROBABILITY_TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-5
#: The unknown category of the probe set.
UNKNOWN_STRING = "mlengine:unknown-category"
#: Split thresholds are probed this many float32 steps either side.
EDGE_STEPS = 2
_SINGLE_ROWS = 8  # probe rows also sent one per request
_ROW_CHUNK = 64  # probe rows also sent in the other instance form


def _no_fallback() -> Predictor:
    raise AssertionError("verification never passes requests to the original")


class _Prober:
    """Runs the original and a compiled candidate on the same requests (module docstring).

    The original's answers are kept, so a second candidate costs only its own runs.
    """

    def __init__(
        self, original: Predictor, target: _Target, examples: list[Any], rows: int, seed: int
    ) -> None:
        self.original, self.target, self.seed = original, target, seed
        self.examples = examples[:rows]
        self.synthetic = max(rows - len(self.examples), 1)
        self._answers: dict[str, list[Any] | str] = {}
        self.base = [_typical(f) for f in target.facts]
        answer = self._expected([self._render(self.base, "main")], False)
        if isinstance(answer, str):
            raise _NotCompiled(
                f"not compiled: the original model rejects a typical instance "
                f"{_text(self._render(self.base, 'main'))}: {answer}"
            )
        scalar = not isinstance(answer[0], list)
        self.predict = (
            replace(target.predict, column=0) if target.squeeze and scalar else target.predict
        )

    def verify(self, session: Any, spec: CompiledSpec, numbers: str) -> tuple[CompiledSpec, int]:
        """The spec with its served forms and summary, and the probe rows compared;
        :class:`_NotCompiled` naming the first difference."""
        spec = replace(spec, predict=self.predict)
        if spec.layout == "columns":
            inputs = [node.name for node in session.get_inputs()]  # in the columns' order
            names, kinds = self.target.names or (), [f.kind for f in self.target.facts]
            if len(inputs) != len(names):
                raise _NotCompiled(f"the graph has {len(inputs)} inputs for {len(names)} columns")
            spec = replace(spec, columns=tuple(map(ColumnSpec, names, kinds, inputs)))
        delegated: list[str] = []
        spec = self._forms(CompiledPredictor(session, spec, Path(), _no_fallback), spec, delegated)
        compiled = CompiledPredictor(session, spec, Path(), _no_fallback)
        records = self._records(spec)
        comparison, checked, skipped = _Comparison(), 0, 0
        for name, instances, required in self._requests(spec, records):
            for probabilities in (False, True) if spec.probabilities else (False,):
                expected = self._expected(instances, probabilities)
                if isinstance(expected, str):
                    raise _NotCompiled(
                        f"the original model rejects the {name}s: {expected}", checked
                    )
                actual = _answer(compiled, instances, probabilities)
                if actual is None and not required:
                    skipped = len(instances)
                    break
                tolerance = "probabilities" if probabilities else spec.tolerance
                index = (
                    0
                    if actual is None
                    else comparison.first_difference(expected, actual, tolerance)
                )
                if index is not None:
                    what = "probabilities" if probabilities else "prediction"
                    got = "no answer" if actual is None else repr(actual[index])
                    raise _NotCompiled(
                        f"{name} {index} {_text(instances[index])} differs: original {what} "
                        f"{expected[index]!r}, compiled {got}",
                        checked + (index if name == "probe row" else 0),
                    )
            if name in ("probe row", "example row") and not skipped:
                checked += len(instances)
        summary = self._summary(spec, numbers, comparison, checked, delegated, skipped)
        return replace(spec, verified=summary), checked

    def _requests(
        self, spec: CompiledSpec, records: list[list[Any]]
    ) -> list[tuple[str, list[Any], bool]]:
        """(name, instances, whether the compiled model must answer): the probe rows in one
        request, some in the other instance form, some alone, then the caller's examples."""
        requests = [("probe row", [self._render(r, "main") for r in records], True)]
        if spec.layout == "columns" or (spec.layout == "booster" and spec.names):
            other = "rows" if spec.layout == "columns" else "objects"
            chunk = [self._render(r, other) for r in records[:_ROW_CHUNK]]
            requests.append((f"probe row (as {other})", chunk, True))
        whole = [r for r in records if not any(v is _ABSENT or v is None for v in r)]
        for record in whole[:_SINGLE_ROWS]:
            requests.append(("single-row request", [self._render(record, "main")], True))
        if self.examples:
            requests.append(("example row", self.examples, False))
        return requests

    def _summary(
        self,
        spec: CompiledSpec,
        numbers: str,
        comparison: _Comparison,
        checked: int,
        delegated: list[str],
        skipped: int,
    ) -> str:
        details = {
            "labels": "labels identical",
            "probabilities": f"max |Δp| {comparison.max_abs:.1g}",
            "values": f"max relative Δ {comparison.max_rel:.1g}",
        }[spec.tolerance]
        if spec.probabilities:
            details += f", max |Δp| {comparison.max_abs:.1g}"
        room = int(0.75 * (self.synthetic - 1))
        edges = sum(min(3 * len(f.edges), room) for f in self.target.facts)
        text = f"verified equal on {checked} rows: {details} ({numbers} inputs"
        text += f", {edges} split-threshold probes)" if edges else ")"
        if delegated:
            more = f" and {len(delegated) - 6} more" if len(delegated) > 6 else ""
            text += "; served by the original model: " + ", ".join(delegated[:6]) + more
        if skipped:
            text += f"; the {skipped} example rows are served by the original model"
        return text

    def _forms(
        self, compiled: CompiledPredictor, spec: CompiledSpec, delegated: list[str]
    ) -> CompiledSpec:
        """``spec`` with the request forms the original takes and the graph reproduces."""
        if spec.layout == "booster":
            return spec
        base, render = self.base, self._render
        if spec.layout == "matrix":
            rows = [base] + [_with(base, j, None) for j in range(min(len(base), 64))]
            missing = self._agrees(compiled, [render(r, "main") for r in rows])
            delegated += [] if missing else ["null values"]
            return replace(spec, missing=missing)
        width = range(len(spec.columns))
        every_missing = [base] + [_with(base, j, v) for j in width for v in (_ABSENT, None)]
        all_missing = self._agrees(compiled, [render(r, "main") for r in every_missing])
        strings = [j for j in width if spec.columns[j].kind == "string"]
        every_unknown = [base] + [_with(base, j, UNKNOWN_STRING) for j in strings]
        all_unknown = self._agrees(compiled, [render(r, "main") for r in every_unknown])
        columns = []
        for j, column in enumerate(spec.columns):
            missing = all_missing or self._agrees(
                compiled,
                [render(r, "main") for r in (base, _with(base, j, _ABSENT), _with(base, j, None))],
            )
            alone = tuple(
                form
                for form, value in (("absent", _ABSENT), ("null", None))
                if self._agrees(compiled, [render(_with(base, j, value), "main")])
            )
            categories = None
            if column.kind == "string" and not (
                all_unknown
                or self._agrees(
                    compiled, [render(base, "main"), render(_with(base, j, UNKNOWN_STRING), "main")]
                )
            ):
                known = self.target.facts[j].categories
                if not known:
                    raise _NotCompiled(
                        f"column {column.name!r} refuses unknown values and no fitted encoder "
                        "lists the values it takes"
                    )
                categories = tuple(str(c) for c in known)
                delegated.append(f"unknown {column.name!r}")
            if not missing:
                delegated.append(f"missing {column.name!r}")
            elif len(alone) < 2:
                delegated.append(f"{column.name!r} missing from every instance")
            columns.append(replace(column, missing=missing, alone=alone, categories=categories))
        return replace(spec, columns=tuple(columns))

    def _agrees(self, compiled: CompiledPredictor, instances: list[Any]) -> bool:
        """Whether the original takes ``instances`` and the compiled model answers the same."""
        spec = compiled.spec
        for probabilities in (False, True) if spec.probabilities else (False,):
            expected = self._expected(instances, probabilities)
            if isinstance(expected, str):
                return False
            actual = _answer(compiled, instances, probabilities)
            if actual is None:
                return False
            tolerance = "probabilities" if probabilities else spec.tolerance
            if _Comparison().first_difference(expected, actual, tolerance) is not None:
                return False
        return True

    def _expected(self, instances: list[Any], probabilities: bool) -> list[Any] | str:
        """The original's predictions, or its error message."""
        key = json.dumps([instances, probabilities], default=repr)
        if key not in self._answers:
            try:
                kwargs = {"probabilities": True} if probabilities else {}
                self._answers[key] = self.original.predict(instances, **kwargs)
            except Exception as exc:  # a rejection is an answer: the original's own error
                self._answers[key] = _first_line(exc)
        return self._answers[key]

    def _records(self, spec: CompiledSpec) -> list[list[Any]]:
        """``self.synthetic`` probe records (one value per input), the typical one first."""
        rng = np.random.default_rng(self.seed)
        facts, room = self.target.facts, int(0.75 * (self.synthetic - 1))
        edges = [_edge_values(f.edges, rng)[:room] for f in facts]
        served: list[tuple[bool, bool]] = [
            (c.missing, c.categories is None) for c in spec.columns
        ] or [(spec.missing, True)] * len(facts)
        records = [self.base]
        for r in range(self.synthetic - 1):
            records.append(
                [
                    edges[j][r] if r < len(edges[j]) else _sample(f, rng, *served[j])
                    for j, f in enumerate(facts)
                ]
            )
        return records

    def _render(self, record: list[Any], form: str) -> Any:
        """A record as an instance: ``main`` is the layout's usual form, else objects/rows."""
        names = self.target.names
        if form == "objects" or (form == "main" and self.target.layout == "columns"):
            assert names is not None
            return {n: v for n, v in zip(names, record, strict=True) if v is not _ABSENT}
        return [None if v is _ABSENT else v for v in record]


def _answer(compiled: CompiledPredictor, instances: list[Any], probabilities: bool) -> Any:
    """The compiled model's own answer, ``None`` when it has none (or refuses the request)."""
    try:
        return compiled.compute(instances, probabilities=probabilities)
    except MlEngineError:
        return None


def _typical(facts: _Facts) -> Any:
    if facts.kind == "string":
        pool = facts.categories or facts.seen
        return str(pool[0]) if pool else UNKNOWN_STRING
    if facts.categories:
        return facts.categories[0]
    return facts.center if facts.center is not None else 0.0


def _sample(facts: _Facts, rng: np.random.Generator, missing: bool, unknown: bool) -> Any:
    """One probe value of an input: missing, a category, a statistic, or near the centre."""
    u = float(rng.random())
    if missing and u < 0.1:
        return _ABSENT if rng.random() < 0.5 else None
    if facts.kind == "string":
        pool = facts.categories if not unknown else facts.categories + facts.seen
        if not pool or (unknown and u < 0.2):
            return UNKNOWN_STRING
        return str(pool[int(rng.integers(len(pool)))])
    if facts.categories and u < 0.5:
        return facts.categories[int(rng.integers(len(facts.categories)))]
    specials = [*facts.specials, 0.0]
    if u < 0.3:
        return specials[int(rng.integers(len(specials)))]
    center = facts.center if facts.center is not None else 0.0
    value = center + 2.0 * (facts.spread or 1.0) * float(rng.standard_normal())
    return round(value) if u < 0.5 else value


def _edge_values(edges: list[float], rng: np.random.Generator) -> list[float]:
    """Each threshold, and ``EDGE_STEPS`` float32 steps below and above it, shuffled."""
    values = []
    for t in edges:
        step = float(np.spacing(np.float32(abs(t))))
        values += [t, t - EDGE_STEPS * step, t + EDGE_STEPS * step]
    order = rng.permutation(len(values))
    return [values[i] for i in order]


def _with(record: list[Any], j: int, value: Any) -> list[Any]:
    changed = list(record)
    changed[j] = value
    return changed


def _text(instance: Any) -> str:
    text = json.dumps(instance, default=repr)
    return text if len(text) <= 200 else text[:200] + "…"


class _Comparison:
    """Compares predictions: labels exactly, probabilities absolutely, values relatively.

    Types must match (``1`` is not ``1.0``); a relative difference is taken of the larger of
    ``|expected|`` and the root mean square of the request's expected numbers.
    """

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.max_rel = 0.0

    def first_difference(
        self, expected: list[Any], actual: list[Any], tolerance: Tolerance
    ) -> int | None:
        if len(expected) != len(actual):
            return min(len(expected), len(actual))
        scale = _rms(expected)
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if self._differs(e, a, tolerance, scale):
                return index
        return None

    def _differs(self, e: Any, a: Any, tolerance: Tolerance, scale: float) -> bool:
        if type(e) is not type(a):
            return True
        if isinstance(e, list):
            return len(e) != len(a) or any(
                self._differs(x, y, tolerance, scale) for x, y in zip(e, a, strict=True)
            )
        if not isinstance(e, float):
            return bool(e != a)
        if math.isnan(e) or math.isnan(a):
            return not (math.isnan(e) and math.isnan(a))
        delta = abs(float(e) - float(a))
        if tolerance == "labels":
            return delta != 0.0
        if tolerance == "probabilities":
            self.max_abs = max(self.max_abs, delta)
            return delta > PROBABILITY_TOLERANCE
        relative = delta / max(abs(e), scale) if delta else 0.0
        self.max_rel = max(self.max_rel, relative)
        return relative > RELATIVE_TOLERANCE


def _rms(predictions: list[Any]) -> float:
    numbers = [
        v
        for v in np.ravel(np.asarray(predictions, dtype=object))
        if type(v) is float and math.isfinite(v)
    ]
    return float(np.sqrt(np.mean(np.square(numbers)))) if numbers else 0.0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:300] + "…"
