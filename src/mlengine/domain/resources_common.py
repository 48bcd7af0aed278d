"""The base of every API resource model and the translation of parse errors.

Conventions every :class:`ApiModel` follows:

* Python attributes are snake_case (the proto names); JSON names are lowerCamelCase aliases.
  Input may use either spelling.
* Every field is optional and defaults to ``None`` ("unset"); :meth:`ApiModel.to_api` omits
  unset fields, so what goes out is what was set.
* Unknown fields are rejected (``extra="forbid"``).
* Models are frozen snapshots: derive changed copies with ``model_copy(update={...})``.

:func:`parse_resource` turns a JSON body into a model and every pydantic error into ONE
:class:`InvalidArgument` whose ``field`` is the lowerCamelCase path of the first problem,
e.g. ``trainingInput.hyperparameters.params[0].minValue``.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, ClassVar, Self, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from mlengine.domain.problems import Problems

#: How an input value is shown in messages; longer JSON is cut to this many characters.
MAX_SHOWN_VALUE = 80

_EXPECTED_BY_ERROR_TYPE = {
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "list_type": "expected a JSON array",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
}


class ApiModel(BaseModel):
    """Base of the v1 resource models; ``API_SCHEMA`` names the discovery schema mirrored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Fields such as ``model_name`` are API names, not pydantic internals.
        protected_namespaces=(),
    )

    API_SCHEMA: ClassVar[str] = ""

    def to_api(self) -> dict[str, Any]:
        """The wire form: camelCase names, unset fields omitted, int64 as strings."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_api(cls, body: object, *, path: str = "") -> Self:
        """Parse a JSON body; raise InvalidArgument naming fields relative to ``path``."""
        return parse_resource(cls, body, path=path)

    @classmethod
    def api_field_names(cls) -> list[str]:
        """The JSON (camelCase) names of this model's fields, in declaration order."""
        return [info.alias or name for name, info in cls.model_fields.items()]


M = TypeVar("M", bound="ApiModel")


def parse_resource(model: type[M], body: object, *, path: str = "") -> M:
    """Validate ``body`` as ``model``; raise one InvalidArgument describing every problem.

    ``path`` is where the body sits in the request (``"trainingInput"``) and prefixes every
    reported field path.
    """
    if not isinstance(body, Mapping):
        where = f"'{path}'" if path else "The request body"
        problems = Problems()
        problems.add(path, f"{where} must be a JSON object, not {_shown(body)}.")
        raise problems.to_error()
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = Problems()
        for error in exc.errors(include_url=False):
            field, message = describe_error(model, error, path)
            problems.add(field, message)
        raise problems.to_error() from None


def describe_error(model: type[ApiModel], error: ErrorDetails, path: str) -> tuple[str, str]:
    """The camelCase field path and a message (what is wrong, how to fix it) for one error."""
    field, parent, annotation = _locate(model, error["loc"], path)
    if error["type"] == "extra_forbidden":
        return field, _unknown_field_message(field, parent)
    if error["type"] == "missing":
        return field, f"Missing required field '{field}'."
    message = (
        f"Invalid value at '{field}' ({_shown(error['input'])}): {_expected(error, annotation)}"
    )
    return field, message if message.endswith((".", "?")) else message + "."


def _expected(error: ErrorDetails, annotation: Any) -> str:
    enum = _unwrap(annotation)
    if error["type"] == "enum" and isinstance(enum, type) and issubclass(enum, Enum):
        return _enum_expectation(enum, error["input"])
    if error["type"] in _EXPECTED_BY_ERROR_TYPE:
        return _EXPECTED_BY_ERROR_TYPE[error["type"]]
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _enum_expectation(enum: type[Enum], given: object) -> str:
    values = [str(member.value) for member in enum]
    expectation = f"expected one of {', '.join(values)}"
    if isinstance(given, str):
        normalised = given.strip().upper().replace("-", "_")
        if normalised in values:
            expectation += f"; did you mean {normalised!r}?"
    return expectation


def _unknown_field_message(field: str, parent: type[ApiModel] | None) -> str:
    message = f"Unknown field '{field}': remove it or check the spelling"
    if parent is None:
        return message + "."
    valid = parent.api_field_names()
    name = field.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.7)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message + f"; valid fields are {', '.join(sorted(valid))}."


def _locate(
    model: type[ApiModel], loc: tuple[int | str, ...], path: str
) -> tuple[str, type[ApiModel] | None, Any]:
    """Walk ``loc`` through the model's types: (camelCase path, last model, final type)."""
    text = path
    annotation: Any = model
    parent: type[ApiModel] | None = None
    for item in loc:
        current = _unwrap(annotation)
        origin = get_origin(current)
        if isinstance(current, type) and issubclass(current, ApiModel):
            parent = current
            name, annotation = _field_of(current, str(item))
            text = f"{text}.{name}" if text else name
        elif origin is list and isinstance(item, int):
            text, annotation = f"{text}[{item}]", get_args(current)[0]
        elif origin is dict:
            text, annotation = f"{text}[{json.dumps(str(item))}]", get_args(current)[1]
        else:
            text, annotation = f"{text}.{item}" if text else str(item), None
    return text, parent, annotation


def _field_of(model: type[ApiModel], key: str) -> tuple[str, Any]:
    """The camelCase name and annotation of ``model``'s field called ``key`` (either spelling)."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.alias or name, info.annotation
    return key, None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to the underlying type."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _shown(value: object) -> str:
    """``value`` as compact JSON for a message, cut to :data:`MAX_SHOWN_VALUE` characters."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_SHOWN_VALUE:
        text = text[: MAX_SHOWN_VALUE - 3] + "..."
    return text
