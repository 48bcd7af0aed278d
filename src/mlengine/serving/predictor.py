"""The contract every framework loader meets, and picking the loader for a model directory.

A version's model directory (the local copy of its ``deploymentUri``) is served by one
:class:`Predictor`. :func:`load_predictor` chooses the loader from the version's
``framework`` or, when it is unset, from the file names in the directory
(:func:`detect_framework`):

    model.joblib, model.pkl            SCIKIT_LEARN  (pickles; see allow_pickle)
    model.bst, model.json, model.ubj   XGBOOST       (Booster files)
    model.txt                          LIGHTGBM      (Booster text file)
    model.onnx                         ONNX
    model.pt / model.pt2               PYTORCH       (TorchScript / torch.export)
    saved_model.pb(txt)                TENSORFLOW    (only where TensorFlow is installed)
    predictionClass + packageUris      CUSTOM        (a custom prediction routine)

With an explicit framework the files are tried in the order of :data:`MODEL_FILES`, first
match wins (spec §3.6: XGBOOST accepts ``model.joblib``/``model.pkl`` before ``model.bst``).
Loaders import their framework only when called, so this module needs none of them.

Errors: a directory with no model file, or files of two frameworks, is
:class:`InvalidArgument` (field ``deploymentUri``, resp. ``framework``); a file that does not
load — corrupt, written by an incompatible version, or needing a package the server lacks
— is :class:`FailedPrecondition` with the reason and the fix.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlengine.domain.errors import FailedPrecondition, InvalidArgument

FRAMEWORKS = ("SCIKIT_LEARN", "XGBOOST", "LIGHTGBM", "ONNX", "PYTORCH", "TENSORFLOW", "CUSTOM")
#: The v1 enum's "not set": the framework is detected from the files.
UNSPECIFIED = "FRAMEWORK_UNSPECIFIED"

#: Per framework, the files a model directory may hold, first match wins.
MODEL_FILES: dict[str, tuple[str, ...]] = {
    "SCIKIT_LEARN": ("model.joblib", "model.pkl"),
    "XGBOOST": ("model.joblib", "model.pkl", "model.bst", "model.json", "model.ubj"),
    "LIGHTGBM": ("model.joblib", "model.pkl", "model.txt"),
    "ONNX": ("model.onnx",),
    "PYTORCH": ("model.pt", "model.pt2"),
    "TENSORFLOW": ("saved_model.pb", "saved_model.pbtxt"),
}
#: Per framework, the files that identify it when no framework is given.
DETECTED_FILES: dict[str, tuple[str, ...]] = {
    **MODEL_FILES,
    "XGBOOST": ("model.bst", "model.json", "model.ubj"),
    "LIGHTGBM": ("model.txt",),
}
#: Files loaded by unpickling: they run code when loaded.
PICKLE_FILES = frozenset({"model.joblib", "model.pkl"})


@runtime_checkable
class Predictor(Protocol):
    """A loaded model version: JSON instances in, JSON-ready predictions out.

    * ``framework`` is one of :data:`FRAMEWORKS`: what actually serves the model (a pickled
      XGBoost Booster found by name as SCIKIT_LEARN reports ``XGBOOST``).
    * ``predict(instances, **kwargs)``: ``instances`` is the request's non-empty list, already
      JSON-decoded; ``kwargs`` are the request's other top-level keys (``signature_name``,
      or keys a custom routine understands). Returns exactly one prediction per instance, in
      order, made only of dict/list/str/int/float/bool/None. Raises :class:`InvalidArgument`
      (field ``instances[i]…`` where one instance is at fault) for instances the model cannot
      take, :class:`Internal` when the model's output breaks this contract. Safe to call
      from several threads at once (a custom routine must be, too).
    * ``probe_instances()``: instances to predict once before the version goes READY: the
      model directory's ``input_example.json`` when it has one, else instances built from
      the model's own metadata where it records enough, else ``None``.
    """

    framework: str

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]: ...

    def probe_instances(self) -> list[Any] | None: ...


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported (checked without importing it: that takes seconds)."""
    return importlib.util.find_spec("tensorflow") is not None


def resolve_framework(framework: str | None, prediction_class: str | None) -> str | None:
    """The framework to load (one of :data:`FRAMEWORKS`), or ``None`` to detect it.

    Accepts the v1 enum names (``SCIKIT_LEARN``, ``XGBOOST``, ``TENSORFLOW``,
    ``FRAMEWORK_UNSPECIFIED``) and mlengine's (``LIGHTGBM``, ``ONNX``, ``PYTORCH``, ``CUSTOM``),
    in any case. A ``prediction_class`` means a custom routine, which loads its own model.
    """
    name = (framework or UNSPECIFIED).strip().upper()
    if name != UNSPECIFIED and name not in FRAMEWORKS:
        raise InvalidArgument(
            f"framework {framework!r} is not one of {', '.join(FRAMEWORKS)}; leave it unset "
            f"(or {UNSPECIFIED}) to detect it from the model files",
            field="framework",
        )
    chosen = None if name == UNSPECIFIED else name
    if prediction_class:
        if chosen not in (None, "CUSTOM"):
            raise InvalidArgument(
                f"a custom prediction routine ({prediction_class}) loads its own model; leave "
                f"framework unset instead of {chosen}",
                field="framework",
            )
        return "CUSTOM"
    if chosen == "CUSTOM":
        raise InvalidArgument(
            "framework CUSTOM needs predictionClass (module.Class of the routine)",
            field="predictionClass",
        )
    return chosen


def detect_framework(model_dir: Path) -> str:
    """The framework of ``model_dir`` from its file names (see the module docstring).

    Raises :class:`InvalidArgument` when nothing is recognised (field ``deploymentUri``, the
    message lists what is there and what is expected) or when files of several frameworks
    are there (field ``framework``: set it), and :class:`FailedPrecondition` for a lone
    SavedModel where TensorFlow is not installed.
    """
    _check_dir(model_dir)
    found = {
        framework: present
        for framework, names in DETECTED_FILES.items()
        if (present := [name for name in names if (model_dir / name).is_file()])
    }
    if "TENSORFLOW" in found and not tensorflow_available():
        if len(found) == 1:
            raise FailedPrecondition(
                f"{model_dir} holds a TensorFlow SavedModel ({found['TENSORFLOW'][0]}) but "
                "TensorFlow is not installed on the server; install it with: "
                "pip install 'mlengine[tf]'",
                field="deploymentUri",
            )
        del found["TENSORFLOW"]
    if not found:
        raise InvalidArgument(
            f"{model_dir} holds no model file mlengine recognises; found {_listing(model_dir)}; "
            f"expected one of {_expected()}",
            field="deploymentUri",
        )
    if len(found) > 1:
        which = "; ".join(f"{', '.join(names)} ({fw})" for fw, names in found.items())
        raise InvalidArgument(
            f"{model_dir} holds model files of several frameworks: {which}; set the version's "
            "framework to the one to serve",
            field="framework",
        )
    return next(iter(found))


def model_file(model_dir: Path, framework: str) -> Path:
    """The file of ``framework`` in ``model_dir``, first match of :data:`MODEL_FILES`."""
    _check_dir(model_dir)
    for name in MODEL_FILES[framework]:
        if (model_dir / name).is_file():
            return model_dir / name
    raise InvalidArgument(
        f"framework {framework} expects {_either(MODEL_FILES[framework])} in {model_dir}; "
        f"found {_listing(model_dir)}",
        field="deploymentUri",
    )


def load_predictor(
    model_dir: Path,
    *,
    framework: str | None = None,
    prediction_class: str | None = None,
    package_paths: Sequence[Path] = (),
    allow_pickle: bool = True,
    threads: int = 1,
) -> Predictor:
    """Load the model in ``model_dir`` for prediction.

    ``framework`` (unset: detected), ``prediction_class`` and ``package_paths`` are the
    version's ``framework``, ``predictionClass`` and local copies of its ``packageUris``.
    Packages make a custom routine importable, and also the user code a pickled pipeline
    refers to. ``allow_pickle=False`` refuses pickles and custom routines (they run code
    when loaded) with :class:`FailedPrecondition`. ``threads`` caps the framework's
    intra-op threads for this model (process-wide for PyTorch and TensorFlow).
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    model_dir = Path(model_dir)
    chosen = resolve_framework(framework, prediction_class)
    if chosen == "CUSTOM":
        assert prediction_class is not None
        _check_dir(model_dir)
        if not allow_pickle:
            raise FailedPrecondition(
                f"{prediction_class} is a custom prediction routine: it runs the code of "
                "packageUris inside the server, and this server refuses code from model "
                "versions (allow_pickle is off); serve an exported model instead, or ask the "
                "administrator to allow code from trusted writers",
                field="predictionClass",
            )
        from mlengine.serving import custom_routine

        return custom_routine.load(model_dir, prediction_class, package_paths)
    chosen = chosen or detect_framework(model_dir)
    path = model_file(model_dir, chosen)
    if path.name in PICKLE_FILES:
        return _load_pickle(path, allow_pickle, package_paths, threads)
    return _load_file(chosen, path, threads)


def _load_pickle(
    path: Path, allow_pickle: bool, package_paths: Sequence[Path], threads: int
) -> Predictor:
    if not allow_pickle:
        raise FailedPrecondition(
            f"{path} is a pickle: unpickling runs code chosen by whoever wrote the file, and "
            "this server refuses pickled models (allow_pickle is off); export the model to a "
            "format that holds no code (ONNX, XGBoost model.json/model.ubj, LightGBM "
            "model.txt, TorchScript model.pt, torch.export model.pt2), or ask the "
            "administrator to allow pickles from trusted writers",
            field="deploymentUri",
        )
    from mlengine.serving import sklearn_model, user_code

    user_code.make_importable(package_paths)
    return sklearn_model.load_pickle(path, threads=threads)


def _load_file(framework: str, path: Path, threads: int) -> Predictor:
    """Load a file that holds no code, with the framework's own loader."""
    if framework == "XGBOOST":
        from mlengine.serving import xgboost_model

        return xgboost_model.load(path, threads=threads)
    if framework == "LIGHTGBM":
        from mlengine.serving import lightgbm_model

        return lightgbm_model.load(path, threads=threads)
    if framework == "ONNX":
        from mlengine.serving.onnx_model import OnnxModel

        return OnnxModel.from_file(path, intra_op_threads=threads)
    if framework == "PYTORCH":
        from mlengine.serving import torch_model

        return torch_model.load(path, threads=threads)
    from mlengine.serving import tensorflow_model

    return tensorflow_model.load(path.parent, threads=threads)


def _check_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise InvalidArgument(
            f"model directory {model_dir} does not exist or is not a directory",
            field="deploymentUri",
        )


def _listing(model_dir: Path, limit: int = 20) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in model_dir.iterdir())
    if not names:
        return "nothing"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _expected() -> str:
    files = [f"{_either(names)} ({fw})" for fw, names in DETECTED_FILES.items()]
    return "; ".join(files) + "; or a custom prediction routine (predictionClass)"


def load_failure(path: Path, what: str, exc: BaseException, hint: str = "") -> FailedPrecondition:
    """The error for a model file that does not load: the file, the reason and the fix.

    ``what`` names the format (``"an XGBoost model"``); only the first line of the
    framework's message is kept (some append a native stack trace).
    """
    reason = f"{type(exc).__name__}: {first_line(exc)}".rstrip(": ")
    fix = hint or "it may be corrupt or saved by a framework version the server does not have"
    return FailedPrecondition(
        f"{path} is not loadable as {what} ({reason}); {fix}", field="deploymentUri"
    )


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message: frameworks append native stack traces."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
