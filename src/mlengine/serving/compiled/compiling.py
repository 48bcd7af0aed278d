"""Compiling: convert a version's model, verify it, and write ``out_dir/model.onnx``.

:func:`compile_model` converts a version's model — skl2onnx for scikit-learn, onnxmltools
for XGBoost and LightGBM Boosters — and writes ``out_dir/model.onnx`` only once the conversion
is shown equal to the original on a probe set (:mod:`~mlengine.serving.compiled.verification`).
Anything else — or a conversion error — returns ``CompileResult(path=None, reason=…)``; only
I/O errors in ``out_dir`` raise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from mlengine.domain.errors import MlEngineError
from mlengine.serving.compiled.conversion import _target
from mlengine.serving.compiled.predictor import _COMPILABLE, _session, _sha256
from mlengine.serving.compiled.spec import (
    COMPILED_FILE,
    SPEC_KEY,
    CompiledSpec,
    CompileResult,
    _NotCompiled,
)
from mlengine.serving.compiled.verification import PROBE_ROWS, _first_line, _Prober
from mlengine.serving.instances import read_input_example
from mlengine.serving.predictor import (
    detect_framework,
    load_predictor,
    model_file,
    resolve_framework,
)


def compile_model(
    model_dir: Path,
    out_dir: Path,
    *,
    framework: str,
    probe_rows: list[Any] | None = None,
    rows: int = PROBE_ROWS,
    seed: int = 0,
) -> CompileResult:
    """Convert the model in ``model_dir`` to ``out_dir/model.onnx`` when verified equal.

    ``framework`` is the version's (as for ``load_predictor``); ``probe_rows`` are instances
    to probe first (default: ``input_example.json``); ``rows`` the size of the probe set,
    ``seed`` its random seed. Never raises for a model that does not compile: the result's
    ``path`` is then ``None`` and ``reason`` says why. Raises ``OSError`` when ``out_dir``
    cannot be written.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    try:
        model, spec, checked = _compile(Path(model_dir), framework, probe_rows, rows, seed)
    except _NotCompiled as exc:
        return CompileResult(None, exc.reason, exc.rows_checked)
    except Exception as exc:  # a model shaped as nothing here foresaw: still not an error
        return CompileResult(None, f"not compiled: {_first_line(exc)}")
    return CompileResult(_write(Path(out_dir), model, spec), spec.verified, checked)


def _compile(
    model_dir: Path, framework: str, probe_rows: list[Any] | None, rows: int, seed: int
) -> tuple[Any, CompiledSpec, int]:
    try:
        chosen = resolve_framework(framework, None) or detect_framework(model_dir)
        if chosen not in _COMPILABLE:
            raise _NotCompiled(f"not compiled: only {', '.join(_COMPILABLE)} models compile")
        source = model_file(model_dir, chosen)
        original = load_predictor(model_dir, framework=chosen)
        examples = list(probe_rows or read_input_example(model_dir) or [])
        target = _target(original, examples)
        probe = original.probe_instances()
    except MlEngineError as exc:
        raise _NotCompiled(f"not compiled: {exc.message}") from exc
    except ImportError as exc:
        raise _NotCompiled(f"not compiled: {exc} (pip install skl2onnx onnxmltools)") from exc
    spec = CompiledSpec(
        framework=chosen,
        serves=original.framework,
        source=source.name,
        sha256=_sha256(source),
        layout=target.layout,
        predict=target.predict,
        tolerance=target.tolerance,
        probabilities=target.probabilities,
        width=len(target.facts),
        names=target.names if target.layout == "booster" else None,
        probe=probe,
    )
    prober = _Prober(original, target, examples, rows, seed)
    failures, checked = [], 0
    for numbers, convert in target.candidates:
        try:
            model = convert()
            session = _session(model.SerializeToString(), 1, "the converted model")
        except Exception as exc:  # converters raise anything; an unconverted model is no error
            failures.append(f"{numbers} inputs: conversion failed: {_first_line(exc)}")
            continue
        try:
            verified, checked = prober.verify(session, spec, numbers)
        except _NotCompiled as exc:
            failures.append(f"{numbers} inputs: {exc.reason}")
            checked = max(checked, exc.rows_checked)
            continue
        return model, verified, checked
    raise _NotCompiled("not compiled: " + "; ".join(failures), checked)


def _write(out_dir: Path, model: Any, spec: CompiledSpec) -> Path:
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    out_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=".model-", suffix=".onnx")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(model.SerializeToString())
        os.replace(temporary, out_dir / COMPILED_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out_dir / COMPILED_FILE
