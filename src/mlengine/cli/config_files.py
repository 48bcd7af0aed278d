"""Reading a resource from a ``--config`` file (YAML or JSON), as gcloud's commands do.

Keys may be written as in the API (``pythonModule``) or in snake_case (``python_module``);
they are camelCased, except the keys under ``labels``, which are data. A UTF-8 BOM is
tolerated. Errors name ``--config`` and the file (:func:`bad_flag`, shared by the commands).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click


def bad_flag(flag: str, message: str) -> click.BadParameter:
    """A usage error naming ``flag`` and saying what is wrong with its value (exit code 2)."""
    return click.BadParameter(message, param_hint=f"'{flag}'")


def load_resource_config(path: Path, kind: str) -> dict[str, Any]:
    """The partial ``kind`` (``Job``, ``Version`` …) held by ``path``; {} for an empty file."""
    import yaml

    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8-sig"))  # JSON is YAML
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise bad_flag("--config", f"cannot read {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_flag(
            "--config", f"{path} must hold a {kind} (a mapping), not {type(data).__name__}."
        )
    return dict(camel_keys(data))


def camel_keys(value: Any, *, under_labels: bool = False) -> Any:
    """``value`` with every mapping key camelCased (label keys kept as they are)."""
    if isinstance(value, dict):
        if under_labels:
            return dict(value)
        return {
            camel(str(k)): camel_keys(v, under_labels=camel(str(k)) == "labels")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def camel(key: str) -> str:
    """``scale_tier`` → ``scaleTier``; camelCase keys are left alone."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key)
