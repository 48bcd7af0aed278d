"""Importing a framework the server may lack, with the install command in the error.

Frameworks are optional extras of mlengine, so a loader never imports one at module level:
it asks :func:`import_framework` when a model needs it. A missing package is the model
owner's problem to fix on the server, hence :class:`FailedPrecondition`, not a crash.
"""

from __future__ import annotations

import importlib
from typing import Any

from mlengine.domain.errors import FailedPrecondition

#: Python module -> the mlengine extra that installs it.
EXTRAS: dict[str, str] = {
    "pandas": "sklearn",
    "joblib": "sklearn",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "torch": "torch",
    "onnxruntime": "onnx",
    "tensorflow": "tf",
}


def install_hint(module: str) -> str:
    """``pip install 'mlengine[extra]'`` for ``module``, or a plain pip command."""
    extra = EXTRAS.get(module.split(".")[0])
    return f"pip install 'mlengine[{extra}]'" if extra else f"pip install {module}"


def import_framework(module: str, *, needed_for: str) -> Any:
    """Import ``module`` or raise :class:`FailedPrecondition` naming the extra to install.

    ``needed_for`` completes "… is needed to serve …", e.g. ``"model.bst (XGBOOST)"``.
    The module is returned untyped: frameworks are optional, so their stubs may be absent.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FailedPrecondition(
            f"the Python package {module!r} is needed to serve {needed_for} but cannot be "
            f"imported ({exc}); install it on the server with: {install_hint(module)}"
        ) from exc
