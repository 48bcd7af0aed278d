"""The ``filter`` of models.list and versions.list: text → :class:`RegistryQuery`.

The v1 API documents no grammar for these filters, so mlengine accepts a small, exact one —
an AND of terms, each of which the store evaluates in SQL — and refuses everything else with
INVALID_ARGUMENT (``field="filter"``) rather than ignoring what it cannot evaluate::

    name:census*          the id starts with "census" (a trailing * on ':')
    name:census  name=census      the id is exactly "census"
    labels.team=vision    labels.team:vision      the label "team" is "vision"
    labels.team:*         labels:team             the label "team" is set
    state=READY           state:failed            versions.list only; any letter case
    name:c* AND labels.team=vision                 AND, or juxtaposition, between terms

Values may be quoted ("…" or '…').  Names are the bare ids (``census``), not full resource
names.  OR, NOT, negation and other fields are refused with a message listing these forms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources_models import VersionState

MAX_FILTER_LENGTH = 2000

_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)?)\s*(?P<op>[:=])\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s()"']+)"""
)
_AND = re.compile(r"\s+AND\s+|\s+")


@dataclass(frozen=True)
class RegistryQuery:
    """What a models.list / versions.list filter selects; every part must hold.

    ``name_prefixes``: the id starts with each; ``names``: the id equals each; ``labels``:
    label key → required value; ``label_keys``: labels that must be set; ``states``: the
    version is in one of them (None: any).
    """

    name_prefixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    label_keys: frozenset[str] = frozenset()
    states: frozenset[VersionState] | None = None


def _help(method: str, with_state: bool) -> str:
    state = ", state=READY" if with_state else ""
    return (
        f"{method} filters are terms joined by AND: name:PREFIX*, name=ID, labels.KEY=VALUE, "
        f"labels.KEY:* (label set){state}; OR, NOT and other fields are not supported."
    )


def parse_model_filter(text: str | None) -> RegistryQuery:
    """Parse a models.list ``filter`` (empty or None selects every model)."""
    return _parse(text, "models.list", with_state=False)


def parse_version_filter(text: str | None) -> RegistryQuery:
    """Parse a versions.list ``filter`` (empty or None selects every version)."""
    return _parse(text, "versions.list", with_state=True)


def _parse(text: str | None, method: str, *, with_state: bool) -> RegistryQuery:
    if text is None or not text.strip():
        return RegistryQuery()
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(
            f"Invalid filter: longer than {MAX_FILTER_LENGTH} characters.", field="filter"
        )
    builder = _Builder(method, with_state)
    position = 0
    while True:
        match = _TERM.match(text, position)
        if match is None:
            raise _error(text, position, "expected a term such as name:census*", method, with_state)
        builder.add(match["field"], match["op"], _unquote(match["value"]), text, match.start())
        position = match.end()
        if not text[position:].strip():
            return builder.query()
        separator = _AND.match(text, position)
        if separator is None:
            raise _error(text, position, "terms must be separated by AND", method, with_state)
        position = separator.end()


class _Builder:
    def __init__(self, method: str, with_state: bool) -> None:
        self.method, self.with_state = method, with_state
        self.prefixes: list[str] = []
        self.names: list[str] = []
        self.labels: dict[str, str] = {}
        self.label_keys: set[str] = set()
        self.states: frozenset[VersionState] | None = None

    def add(self, name: str, op: str, value: str, text: str, at: int) -> None:
        if name == "name":
            if op == ":" and value.endswith("*"):
                self.prefixes.append(value[:-1])
            else:
                self.names.append(value)
        elif name == "labels" and op == ":":
            self.label_keys.add(value)
        elif name.startswith("labels."):
            key = name.removeprefix("labels.")
            if op == ":" and value == "*":
                self.label_keys.add(key)
            elif self.labels.setdefault(key, value) != value:
                problem = f"label {key!r} cannot equal both {self.labels[key]!r} and {value!r}"
                raise _error(text, at, problem, self.method, self.with_state)
        elif name == "state" and self.with_state:
            self._state(value, text, at)
        else:
            raise _error(text, at, f"unsupported field {name!r}", self.method, self.with_state)

    def _state(self, value: str, text: str, at: int) -> None:
        try:
            state = VersionState(value.upper())
        except ValueError:
            states = ", ".join(s.value for s in VersionState)
            raise _error(
                text, at, f"unknown state {value!r} (states: {states})", self.method, True
            ) from None
        selected = frozenset({state})
        self.states = selected if self.states is None else self.states & selected

    def query(self) -> RegistryQuery:
        return RegistryQuery(
            tuple(self.prefixes),
            tuple(self.names),
            dict(self.labels),
            frozenset(self.label_keys),
            self.states,
        )


def _unquote(value: str) -> str:
    if value[:1] in ("'", '"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _error(text: str, at: int, problem: str, method: str, with_state: bool) -> InvalidArgument:
    rest = text[at : at + 20].strip() or "the end of the filter"
    return InvalidArgument(
        f"Invalid filter at position {at + 1} ({rest!r}): {problem}. {_help(method, with_state)}",
        field="filter",
    )
