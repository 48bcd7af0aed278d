"""Resource ids, resource names and labels.

Jobs, models and versions share one id rule (letters, digits and underscores, starting with
a letter, at most 128 characters; case-sensitive; no hyphens).  Full resource names are
paths built from those ids::

    projects/{project}
    projects/{project}/jobs/{job}
    projects/{project}/models/{model}
    projects/{project}/models/{model}/versions/{version}
    projects/{project}/operations/{operation}

Each shape is a small frozen dataclass: ``JobName.parse("projects/p/jobs/j")`` and
``str(JobName("p", "j"))`` are inverses.  Constructing one validates every part, so a name
object in hand is always well formed.

Project ids are checked leniently: Google requires 6-30 characters of lower-case letters,
digits and hyphens, but a self-hosted engine also accepts short ids, underscores and dots
(``^[a-z][a-z0-9._-]{0,62}$``) so that ``local`` or ``my_lab`` work.

Every failure is an :class:`InvalidArgument` whose ``field`` is the caller's field path and
whose message shows the bad value, the rule and a suggested fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from mlengine.domain.errors import InvalidArgument

RESOURCE_ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
PROJECT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{0,62}$")
#: Operation ids are minted by the server (e.g. ``create_census_v1-1511476437034``).
OPERATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
LABEL_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_PATTERN = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64
MAX_RESOURCE_ID_LENGTH = 128

_ID_RULE = (
    "ids may contain only letters, digits and underscores, must start with a letter "
    "and be at most 128 characters long"
)


def suggest_resource_id(value: str, *, prefix: str = "x") -> str | None:
    """A valid id close to ``value``, or None if nothing usable is left.

    Hyphens, spaces and other symbols become underscores; an id that would start with a digit
    gets ``{prefix}_`` in front.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", value.strip()).lstrip("_")
    if not cleaned:
        return None
    if not cleaned[0].isalpha():
        cleaned = f"{prefix}_{cleaned}"
    return cleaned[:MAX_RESOURCE_ID_LENGTH]


def is_valid_resource_id(value: object) -> bool:
    """True when ``value`` is a string matching :data:`RESOURCE_ID_PATTERN`."""
    return isinstance(value, str) and RESOURCE_ID_PATTERN.fullmatch(value) is not None


def validate_resource_id(value: object, *, field: str, kind: str) -> str:
    """Return ``value`` if it is a valid job/model/version id, else raise InvalidArgument.

    ``field`` is the path reported (``jobId``, ``--job``); ``kind`` names the resource in the
    message (``job``, ``model``, ``version``).
    """
    if is_valid_resource_id(value):
        return str(value)
    if not isinstance(value, str) or value == "":
        raise InvalidArgument(
            f"Field '{field}' needs a {kind} id; {_ID_RULE}, e.g. 'my_{kind}_1'.", field=field
        )
    message = f"Invalid {kind} id {value!r} in '{field}': {_ID_RULE}."
    suggestion = suggest_resource_id(value, prefix=kind)
    if suggestion is not None:
        message += f" Try {suggestion!r}."
    raise InvalidArgument(message, field=field)


def validate_project_id(value: object, *, field: str = "project") -> str:
    """Return ``value`` if it is an acceptable project id, else raise InvalidArgument."""
    if isinstance(value, str) and PROJECT_ID_PATTERN.fullmatch(value):
        return value
    hint = ""
    if isinstance(value, str) and PROJECT_ID_PATTERN.fullmatch(value.lower()):
        hint = f" Try {value.lower()!r}."
    raise InvalidArgument(
        f"Invalid project id {value!r} in '{field}': project ids are lower-case letters, digits, "
        f"hyphens, underscores and dots, start with a letter and are at most 63 characters.{hint}",
        field=field,
    )


def validate_operation_id(value: object, *, field: str = "name") -> str:
    """Return ``value`` if it is a well-formed operation id, else raise InvalidArgument."""
    if isinstance(value, str) and OPERATION_ID_PATTERN.fullmatch(value):
        return value
    raise InvalidArgument(
        f"Invalid operation id {value!r} in '{field}': operation ids are letters, digits, "
        "'.', '_' and '-', start with a letter or digit and are at most 255 characters.",
        field=field,
    )


def validate_labels(labels: Mapping[str, str], *, field: str = "labels") -> None:
    """Check ``labels`` against the GCP label rules; raise InvalidArgument on the first problem.

    Keys: 1-63 characters of lower-case ASCII letters, digits, ``_`` and ``-``, starting with
    a letter.  Values: 0-63 characters of the same set.  At most 64 labels.  (GCP also
    allows international letters; mlengine keeps to ASCII.)
    """
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(
            f"'{field}' has {len(labels)} labels; at most {MAX_LABELS} are allowed.", field=field
        )
    for key, value in labels.items():
        if not LABEL_KEY_PATTERN.fullmatch(key):
            raise InvalidArgument(
                f"Invalid label key {key!r} in '{field}': keys are 1-63 lower-case letters, "
                "digits, '_' or '-', starting with a letter"
                f"{_label_hint(key, must_start_with_letter=True)}.",
                field=f'{field}["{key}"]',
            )
        if not LABEL_VALUE_PATTERN.fullmatch(value):
            raise InvalidArgument(
                f"Invalid value {value!r} for label {key!r} in '{field}': values are at most 63 "
                f"lower-case letters, digits, '_' or '-'{_label_hint(value)}.",
                field=f'{field}["{key}"]',
            )


def _label_hint(text: str, *, must_start_with_letter: bool = False) -> str:
    fixed = re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]
    if must_start_with_letter and not (fixed[:1].isalpha() and fixed[:1].isascii()):
        fixed = f"x{fixed}"[:63]
    return f"; try {fixed!r}" if fixed and fixed != text else ""


def _split(name: object, shape: str, field: str) -> list[str]:
    """Split ``name`` into the ``{placeholders}`` of ``shape``; raise if the literals differ."""
    parts = name.split("/") if isinstance(name, str) else []
    expected = shape.split("/")
    literal_ok = len(parts) == len(expected) and all(
        want.startswith("{") or got == want for got, want in zip(parts, expected, strict=True)
    )
    if not literal_ok or any(p == "" for p in parts):
        raise InvalidArgument(
            f"Invalid resource name {name!r} in '{field}': expected the form '{shape}'.",
            field=field,
        )
    return [got for got, want in zip(parts, expected, strict=True) if want.startswith("{")]


@dataclass(frozen=True)
class ProjectName:
    """``projects/{project}``."""

    SHAPE: ClassVar[str] = "projects/{project}"
    project: str

    def __post_init__(self) -> None:
        validate_project_id(self.project)

    @classmethod
    def parse(cls, name: str, *, field: str = "name") -> Self:
        (project,) = _split(name, cls.SHAPE, field)
        return cls(validate_project_id(project, field=field))

    def __str__(self) -> str:
        return f"projects/{self.project}"


@dataclass(frozen=True)
class JobName:
    """``projects/{project}/jobs/{job}``."""

    SHAPE: ClassVar[str] = "projects/{project}/jobs/{job}"
    project: str
    job: str

    def __post_init__(self) -> None:
        validate_project_id(self.project)
        validate_resource_id(self.job, field="jobId", kind="job")

    @classmethod
    def parse(cls, name: str, *, field: str = "name") -> Self:
        project, job = _split(name, cls.SHAPE, field)
        validate_project_id(project, field=field)
        return cls(project, validate_resource_id(job, field=field, kind="job"))

    @property
    def parent(self) -> ProjectName:
        return ProjectName(self.project)

    def __str__(self) -> str:
        return f"projects/{self.project}/jobs/{self.job}"


@dataclass(frozen=True)
class ModelName:
    """``projects/{project}/models/{model}``."""

    SHAPE: ClassVar[str] = "projects/{project}/models/{model}"
    project: str
    model: str

    def __post_init__(self) -> None:
        validate_project_id(self.project)
        validate_resource_id(self.model, field="name", kind="model")

    @classmethod
    def parse(cls, name: str, *, field: str = "name") -> Self:
        project, model = _split(name, cls.SHAPE, field)
        validate_project_id(project, field=field)
        return cls(project, validate_resource_id(model, field=field, kind="model"))

    @property
    def parent(self) -> ProjectName:
        return ProjectName(self.project)

    def version(self, version: str) -> VersionName:
        """The name of version ``version`` of this model."""
        return VersionName(self.project, self.model, version)

    def __str__(self) -> str:
        return f"projects/{self.project}/models/{self.model}"


@dataclass(frozen=True)
class VersionName:
    """``projects/{project}/models/{model}/versions/{version}``."""

    SHAPE: ClassVar[str] = "projects/{project}/models/{model}/versions/{version}"
    project: str
    model: str
    version: str

    def __post_init__(self) -> None:
        validate_project_id(self.project)
        validate_resource_id(self.model, field="name", kind="model")
        validate_resource_id(self.version, field="name", kind="version")

    @classmethod
    def parse(cls, name: str, *, field: str = "name") -> Self:
        project, model, version = _split(name, cls.SHAPE, field)
        validate_project_id(project, field=field)
        validate_resource_id(model, field=field, kind="model")
        return cls(project, model, validate_resource_id(version, field=field, kind="version"))

    @property
    def parent(self) -> ModelName:
        return ModelName(self.project, self.model)

    def __str__(self) -> str:
        return f"projects/{self.project}/models/{self.model}/versions/{self.version}"


@dataclass(frozen=True)
class OperationName:
    """``projects/{project}/operations/{operation}``."""

    SHAPE: ClassVar[str] = "projects/{project}/operations/{operation}"
    project: str
    operation: str

    def __post_init__(self) -> None:
        validate_project_id(self.project)
        validate_operation_id(self.operation)

    @classmethod
    def parse(cls, name: str, *, field: str = "name") -> Self:
        project, operation = _split(name, cls.SHAPE, field)
        validate_project_id(project, field=field)
        return cls(project, validate_operation_id(operation, field=field))

    @property
    def parent(self) -> ProjectName:
        return ProjectName(self.project)

    def __str__(self) -> str:
        return f"projects/{self.project}/operations/{self.operation}"
