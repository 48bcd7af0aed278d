"""Compile scikit-learn pipelines and XGBoost/LightGBM boosters to ONNX Runtime, where it is safe.

A scikit-learn pipeline pays ~4.5 ms per ``predict`` call whatever the rows (mostly
``ColumnTransformer`` overhead); the same graph in onnxruntime costs tens of microseconds.
:func:`compile_model` converts a version's model — skl2onnx for scikit-learn, onnxmltools
for XGBoost and LightGBM Boosters — and writes ``out_dir/model.onnx`` only once the conversion
is shown equal to the original on a probe set. :func:`load_compiled` serves that file as a
:class:`~mlengine.serving.predictor.Predictor` whose predictions have exactly the JSON shape and
types of ``load_predictor``'s for the same model (``str`` labels stay ``str``, ``int`` stay
``int``; ``"probabilities": true`` works as for scikit-learn).

The package, by stage:

- :mod:`~mlengine.serving.compiled.spec` — the compiled file's contract (:class:`CompiledSpec`,
  stored in its metadata) and :class:`CompileResult`;
- :mod:`~mlengine.serving.compiled.conversion` — what to convert (skl2onnx, onnxmltools) and
  what the fitted model tells about its inputs;
- :mod:`~mlengine.serving.compiled.verification` — the probe set, and the comparison of the
  original and the compiled model on it;
- :mod:`~mlengine.serving.compiled.compiling` — :func:`compile_model`, which ties them together
  and writes the file;
- :mod:`~mlengine.serving.compiled.predictor` — :func:`load_compiled` and
  :class:`CompiledPredictor`, which serve it.
"""

from mlengine.serving.compiled.compiling import compile_model
from mlengine.serving.compiled.predictor import CompiledPredictor, load_compiled
from mlengine.serving.compiled.spec import (
    COMPILED_FILE,
    MISSING_STRING,
    SPEC_KEY,
    ColumnSpec,
    CompiledSpec,
    CompileResult,
    OutputSpec,
    Tolerance,
)
from mlengine.serving.compiled.verification import (
    EDGE_STEPS,
    PROBABILITY_TOLERANCE,
    PROBE_ROWS,
    RELATIVE_TOLERANCE,
    UNKNOWN_STRING,
)

__all__ = [
    "COMPILED_FILE",
    "EDGE_STEPS",
    "MISSING_STRING",
    "PROBABILITY_TOLERANCE",
    "PROBE_ROWS",
    "RELATIVE_TOLERANCE",
    "SPEC_KEY",
    "UNKNOWN_STRING",
    "ColumnSpec",
    "CompileResult",
    "CompiledPredictor",
    "CompiledSpec",
    "OutputSpec",
    "Tolerance",
    "compile_model",
    "load_compiled",
]
