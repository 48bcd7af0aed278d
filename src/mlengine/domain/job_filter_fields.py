"""What a jobs.list filter term can name and compare: Job fields by their wire path.

:func:`resolve_field` turns ``trainingInput.scaleTier`` (or ``training_input.scale_tier``, in
any letter case) into a :class:`FieldRef` by walking the Job model's fields, so every field of
the v1 Job schema is filterable without a hand-kept list.  :func:`build_test` turns an
operator and a value into a test of the field's value, checking the value against the field's
type up front (``state=FAILD`` is an error, not an empty list).

Comparison rules, by the type of the field:

========== ======================= ==========================================================
type       operators               value
========== ======================= ==========================================================
string     ``= != :``              ``:`` with a trailing ``*`` is a prefix match
enum       ``= != :``              a member, any case (``state=failed``); ``:X*`` = prefix
bool       ``= != :``              ``true`` / ``false``
number     ``= != : < <= > >=``    a decimal number
timestamp  ``= != : < <= > >=``    RFC 3339 (``2024-01-01T00:00:00Z``) or a date (UTC midnight)
duration   ``= != : < <= > >=``    ``7200s``
labels     ``:``                   ``labels:KEY`` has the key; ``labels.KEY`` is a string field
list       ``:``                   some element matches (string rules)
========== ======================= ==========================================================

``field:*`` means the field is set (and not empty).  An unset field is never ``=``, ``:`` or
ordered against anything, and is ``!=`` everything — except an enum with an ``…_UNSPECIFIED``
member (``state``), where unset reads as that member, as in protobuf.
"""

from __future__ import annotations

import difflib
import operator
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Annotated, Any, Union, get_args, get_origin

from mlengine.domain.durations import parse_duration, parse_timestamp
from mlengine.domain.resources import ApiModel, Job

Test = Callable[[Any], bool]

ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


class FilterError(ValueError):
    """A problem with one term; the parser adds the position and the help text."""


class Kind(StrEnum):
    TEXT = "string"
    ENUM = "enum"
    BOOL = "bool"
    NUMBER = "number"
    TIME = "timestamp"
    DURATION = "duration"
    LABELS = "labels"
    LIST = "list"


_ARTICLE = {kind: "an" if kind.value[0] in "aeiou" else "a" for kind in Kind}


@dataclass(frozen=True)
class FieldRef:
    """A resolved field: attribute path on Job, how to compare it, and its canonical name."""

    shown: str
    path: tuple[str, ...]
    kind: Kind
    enum: type[Enum] | None = None
    map_key: str | None = None

    def get(self, job: Job) -> Any:
        value: Any = job
        for name in self.path:
            value = getattr(value, name)
            if value is None:
                break
        if self.map_key is not None:
            value = None if value is None else value.get(self.map_key)
        if value is None and self.enum is not None:
            value = unspecified_member(self.enum)
        return value


def unspecified_member(enum: type[Enum]) -> Enum | None:
    """The enum's proto3 default (``STATE_UNSPECIFIED``), if it has one."""
    first = next(iter(enum))
    return first if str(first.value).endswith("_UNSPECIFIED") else None


def resolve_field(text: str) -> FieldRef:
    """Resolve a dotted field path of the Job resource; FilterError says what is wrong."""
    segments = text.split(".")
    model: type[ApiModel] = Job
    path: list[str] = []
    shown: list[str] = []
    for index, segment in enumerate(segments):
        name, alias, annotation = _lookup(model, segment, ".".join(shown))
        path.append(name)
        shown.append(alias)
        rest = segments[index + 1 :]
        base = _unwrap(annotation)
        if isinstance(base, type) and issubclass(base, ApiModel):
            if not rest:
                example = f"{alias}.{base.api_field_names()[0]}"
                raise FilterError(f"'{text}' is an object: name one of its fields, e.g. {example}")
            model = base
            continue
        return _leaf(text, ".".join(shown), tuple(path), base, rest)
    raise AssertionError("unreachable: the loop returns or raises")


def _leaf(text: str, shown: str, path: tuple[str, ...], base: Any, rest: list[str]) -> FieldRef:
    origin = get_origin(base)
    if origin is dict:
        if not rest:
            return FieldRef(shown, path, Kind.LABELS)
        if len(rest) > 1:
            raise FilterError(f"'{text}': a label key cannot contain '.'")
        return FieldRef(f"{shown}.{rest[0]}", path, Kind.TEXT, map_key=rest[0])
    if rest:
        raise FilterError(f"'{shown}' has no fields, so '{text}' names nothing")
    if origin is list:
        if _unwrap(get_args(base)[0]) is not str:
            raise FilterError(f"'{shown}' is a list of objects and cannot be filtered on")
        return FieldRef(shown, path, Kind.LIST)
    kinds: list[tuple[type, Kind]] = [
        (bool, Kind.BOOL),
        (int, Kind.NUMBER),
        (float, Kind.NUMBER),
        (datetime, Kind.TIME),
        (timedelta, Kind.DURATION),
    ]
    if isinstance(base, type) and issubclass(base, Enum):
        return FieldRef(shown, path, Kind.ENUM, enum=base)
    if base is str:
        return FieldRef(shown, path, Kind.TEXT)
    for python_type, kind in kinds:
        if base is python_type:
            return FieldRef(shown, path, kind)
    raise FilterError(f"'{shown}' cannot be filtered on")


def _lookup(model: type[ApiModel], segment: str, parent: str) -> tuple[str, str, Any]:
    """(attribute name, camelCase name, annotation) of ``segment``, in either spelling."""
    wanted = segment.replace("_", "").lower()
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if wanted == alias.lower():
            return name, alias, info.annotation
    valid = model.api_field_names()
    where = f"'{parent}'" if parent else "a Job"
    message = f"unknown field '{segment}': {where} has no such field"
    close = difflib.get_close_matches(segment, valid, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    if parent:
        message += f"; its fields are {', '.join(valid)}"
    raise FilterError(message)


def _unwrap(annotation: Any) -> Any:
    """``Int64 | None`` → ``int``: strip Optional and Annotated."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = members[0] if len(members) == 1 else Any
        else:
            return annotation


# --- value tests -------------------------------------------------------------------------


def build_test(field: FieldRef, op: str, value: str) -> Test:
    """The test of ``field``'s value for ``field op value``; FilterError if it cannot hold."""
    if op == ":" and value == "*":
        return _presence(field)
    if field.kind is Kind.LABELS:
        if op != ":":
            raise FilterError(
                f"'{field.shown}{op}{value}': compare one label with labels.KEY=VALUE, "
                "or test for a key with labels:KEY"
            )
        return lambda labels: labels is not None and value in labels
    if field.kind is Kind.LIST:
        if op != ":":
            raise FilterError(f"'{field.shown}' is a list: use '{field.shown}:VALUE'")
        element = _text_test(":", value)
        return lambda items: items is not None and any(element(item) for item in items)
    if op in ORDERING and field.kind in (Kind.TEXT, Kind.ENUM, Kind.BOOL):
        raise FilterError(
            f"'{field.shown}' is {_ARTICLE[field.kind]} {field.kind.value}: {op} applies to "
            "times, durations and numbers; use =, != or :"
        )
    return _typed_test(field, op, value)


def _typed_test(field: FieldRef, op: str, value: str) -> Test:
    if field.kind is Kind.TEXT:
        return _text_test(op, value)
    if field.kind is Kind.ENUM:
        assert field.enum is not None
        return _enum_test(field.shown, field.enum, op, value)
    if field.kind is Kind.BOOL:
        if value.lower() not in ("true", "false"):
            raise FilterError(f"'{field.shown}' is true or false, not '{value}'")
        return _compare(op, value.lower() == "true")
    parse = {Kind.NUMBER: _number, Kind.TIME: _timestamp, Kind.DURATION: _duration}[field.kind]
    return _compare(op, parse(field.shown, value))


def _presence(field: FieldRef) -> Test:
    default = unspecified_member(field.enum) if field.enum is not None else None
    return lambda actual: actual is not None and actual != default and actual not in ("", [], {})


def _text_test(op: str, value: str) -> Test:
    if op == ":" and value.endswith("*"):
        prefix = value[:-1]
        return lambda actual: isinstance(actual, str) and actual.startswith(prefix)
    return _compare(op, value)


def _enum_test(shown: str, enum: type[Enum], op: str, value: str) -> Test:
    wanted = value.upper()
    names = [str(member.value) for member in enum]
    if op == ":" and wanted.endswith("*"):
        prefix = wanted[:-1]
        return lambda actual: actual is not None and str(actual.value).startswith(prefix)
    if wanted not in names:
        raise FilterError(f"'{value}' is not a {shown}; expected one of {', '.join(names)}")
    return _compare(op, enum(wanted))


def _compare(op: str, expected: Any) -> Test:
    if op in ("=", ":"):
        return lambda actual: actual is not None and actual == expected
    if op == "!=":
        return lambda actual: actual is None or actual != expected
    ordered = ORDERING[op]
    return lambda actual: actual is not None and bool(ordered(actual, expected))


def _number(shown: str, value: str) -> float:
    if not _NUMBER.fullmatch(value):
        raise FilterError(f"'{shown}' is a number, not '{value}'")
    return float(value)


def _timestamp(shown: str, value: str) -> datetime:
    if _DATE.fullmatch(value):
        try:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        return parse_timestamp(value)
    except ValueError:
        raise FilterError(
            f"'{shown}' is a time: write RFC 3339 such as \"2024-01-01T00:00:00Z\" or a date "
            f"such as 2024-01-01, not '{value}'"
        ) from None


def _duration(shown: str, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError:
        raise FilterError(f"'{shown}' is a duration such as 7200s, not '{value}'") from None
