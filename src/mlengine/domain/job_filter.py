"""The jobs.list ``filter`` grammar: text → :class:`JobQuery`.

What gcloud users write (``gcloud ml-engine jobs list --filter=…``)::

    jobId:census*                       prefix match (a trailing * on ':')
    jobId:census_1                      exact match (':' without *)
    state=FAILED   state:RUNNING        enum values in any case
    state!=SUCCEEDED   -state=QUEUED    negation: '!=', a leading '-', or NOT
    labels.team=vision   labels.owner:* labels:owner
    createTime>"2024-01-01T00:00:00Z"   also <, <=, >=; and a bare date: createTime>=2024-01-01
    jobId:rnn* AND state:FAILED         AND, OR, NOT, parentheses; juxtaposition means AND
    trainingInput.scaleTier=BASIC_GPU   any Job field by its lowerCamelCase (or snake_case) path

Grammar (keywords in capitals, as in Google's list filters)::

    filter     = [ expression ]
    expression = unary { [ "AND" ] unary }          (one kind of connective per level:)
               | unary { "OR" unary }               ("a AND b OR c" needs parentheses)
    unary      = ( "NOT" | "-" ) unary | "(" expression ")" | term
    term       = field op value
    field      = name { "." key }                   (e.g. labels.team, trainingInput.region)
    op         = ":" | "=" | "!=" | "<" | "<=" | ">" | ">="
    value      = quoted string ("…" or '…', backslash escapes) | run of non-space, non-paren

Mixing AND and OR at one level is an error rather than a silent choice of precedence, because
SQL users and AIP-160 users expect opposite ones.  Field typing and comparison rules live in
:mod:`mlengine.domain.job_filter_fields`.

Push-down: when the whole filter is an AND of parts, parts that only test ``state`` become
``JobQuery.states`` (the states that satisfy them), a ``jobId`` prefix or exact match becomes
``job_id_prefix``, and ``labels.KEY=VALUE`` becomes ``labels``.  The predicate still tests
everything, so results never depend on what a store pushes down.  Every error is
:class:`InvalidArgument` with ``field="filter"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.job_filter_fields import FieldRef, FilterError, Test, build_test, resolve_field
from mlengine.domain.resources import Job, JobState

#: Longer filters are refused rather than parsed (they are never typed by hand).
MAX_FILTER_LENGTH = 10_000
#: Nesting deeper than this (parentheses, NOT) is refused before Python's recursion limit.
MAX_DEPTH = 50
HELP = (
    "Write terms such as jobId:census*, state=FAILED, labels.team=vision, labels.owner:* or "
    'createTime>"2024-01-01T00:00:00Z", combined with AND, OR, NOT and parentheses. '
    "Fields: jobId, state, createTime, startTime, endTime, errorMessage, labels.KEY, and any "
    "other Job field by its lowerCamelCase path (e.g. trainingInput.scaleTier); operators: "
    ": = != < <= > >=."
)

_OPERATORS = ("!=", "<=", ">=", "=", "<", ">", ":")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")
_BARE_VALUE = re.compile(r"[^\s()]+")
_KEYWORD = re.compile(r"(AND|OR|NOT)(?=[\s()]|\Z)")
_SPACE = re.compile(r"\s*")


class Node(Protocol):
    def matches(self, job: Job) -> bool: ...


@dataclass(frozen=True)
class Comparison:
    """One term, ``field op value``."""

    field: FieldRef
    op: str
    value: str
    test: Test

    def matches(self, job: Job) -> bool:
        return self.test(self.field.get(job))


@dataclass(frozen=True)
class AllOf:
    items: tuple[Node, ...]

    def matches(self, job: Job) -> bool:
        return all(item.matches(job) for item in self.items)


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Node, ...]

    def matches(self, job: Job) -> bool:
        return any(item.matches(job) for item in self.items)


@dataclass(frozen=True)
class Negation:
    item: Node

    def matches(self, job: Job) -> bool:
        return not self.item.matches(job)


@dataclass(frozen=True)
class JobQuery:
    """What jobs.list selects, beyond the project. ``predicate`` is applied last.

    ``states``, ``job_id_prefix`` and ``labels`` (label key → required value) may be pushed
    down into SQL; ``predicate`` (the parsed ``filter`` expression) must hold for every job
    returned.  Defined here, in the domain, so that the parser can build it;
    ``mlengine.stores.base`` re-exports it for the stores.
    """

    states: frozenset[JobState] | None = None
    job_id_prefix: str | None = None
    predicate: Callable[[Job], bool] | None = None
    labels: Mapping[str, str] | None = None


def parse_job_filter(text: str | None) -> JobQuery:
    """Parse a jobs.list ``filter``; empty or None selects every job.

    Raises InvalidArgument (``field="filter"``) quoting the offending text and its position.
    """
    if text is None or not text.strip():
        return JobQuery()
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(
            f"Invalid filter: longer than {MAX_FILTER_LENGTH} characters.", field="filter"
        )
    root = _Parser(text).parse()
    return _push_down(root)


class _Parser:
    """Recursive descent over the raw text (values are read in context, so ':' may be in one)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def parse(self) -> Node:
        node = self.expression()
        if self.peek() == ")":
            raise self.error("unbalanced ')'")
        return node

    def expression(self) -> Node:
        items = [self.unary()]
        connective: str | None = None
        while self.peek() not in ("", ")"):
            start = self.pos
            keyword = self.keyword()
            word = keyword if keyword in ("AND", "OR") else "AND"
            if word != keyword:
                self.pos = start  # NOT or a term: implicit AND
            if connective is not None and connective != word:
                raise self.error("AND and OR need parentheses when combined, e.g. (a AND b) OR c")
            connective = word
            items.append(self.unary())
        if len(items) == 1:
            return items[0]
        return AnyOf(tuple(items)) if connective == "OR" else AllOf(tuple(items))

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep")
        try:
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> Node:
        char = self.peek()
        start = self.pos
        if self.keyword() == "NOT":
            return Negation(self.unary())
        self.pos = start
        if char == "-" and self.pos + 1 < len(self.text) and not self.text[self.pos + 1].isspace():
            self.pos += 1
            return Negation(self.unary())
        if char == "(":
            self.pos += 1
            node = self.expression()
            if self.peek() != ")":
                raise self.error("missing ')'", at=start)
            self.pos += 1
            return node
        if char in ("", ")"):
            raise self.error("expected a term such as state=FAILED")
        return self.term()

    def term(self) -> Node:
        start = self.pos
        match = _FIELD.match(self.text, self.pos)
        if match is None:
            raise self.error(f"expected a field name, found {self.snippet()}")
        self.pos = match.end()
        name = match.group()
        op = self.operator(name)
        value = self.value(name, op)
        try:
            field = resolve_field(name)
            test = build_test(field, op, value)
        except FilterError as problem:
            raise self.error(str(problem), at=start) from None
        return Comparison(field, op, value, test)

    def operator(self, name: str) -> str:
        self.peek()
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        hint = ""
        if name.upper() in ("AND", "OR", "NOT"):
            hint = f" (write the keyword {name.upper()} in capitals)"
        raise self.error(f"expected an operator (: = != < <= > >=) after '{name}'{hint}")

    def value(self, name: str, op: str) -> str:
        char = self.peek()
        if char in ("'", '"'):
            return self.quoted(char)
        match = _BARE_VALUE.match(self.text, self.pos)
        if match is None:
            raise self.error(f"missing value after '{name}{op}'")
        self.pos = match.end()
        return match.group()

    def quoted(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return "".join(chars)
            chars.append(char)
        raise self.error(f"unterminated string starting with {quote}", at=start)

    def keyword(self) -> str | None:
        self.peek()
        match = _KEYWORD.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def peek(self) -> str:
        """Skip whitespace; the next character, or "" at the end."""
        self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.text[self.pos : self.pos + 1]

    def snippet(self, at: int | None = None) -> str:
        at = self.pos if at is None else at
        if at >= len(self.text):
            return "the end of the filter"
        rest = self.text[at : at + 20]
        return repr(rest + ("..." if len(self.text) > at + 20 else ""))

    def error(self, problem: str, *, at: int | None = None) -> InvalidArgument:
        at = self.pos if at is None else at
        return InvalidArgument(
            f"Invalid filter at position {at + 1} ({self.snippet(at)}): {problem}. {HELP}",
            field="filter",
        )


# --- push-down ---------------------------------------------------------------------------


def _push_down(root: Node) -> JobQuery:
    """The query for ``root``: its predicate, plus the states, jobId prefix and label values
    every match must have (a superset of what the predicate selects)."""
    parts = root.items if isinstance(root, AllOf) else (root,)
    states: frozenset[JobState] | None = None
    prefix: str | None = None
    labels: dict[str, str] = {}
    for part in parts:
        if _tests_only(part, ("state",)):
            selected = frozenset(s for s in JobState if part.matches(Job(state=s)))
            states = selected if states is None else states & selected
        candidate = _job_id_prefix(part)
        if candidate and (prefix is None or candidate.startswith(prefix)):
            prefix = candidate
        label = _label_value(part)
        if label is not None:
            labels.setdefault(*label)
    if states == frozenset(JobState):
        states = None
    return JobQuery(states, prefix, root.matches, labels or None)


def _tests_only(node: Node, path: tuple[str, ...]) -> bool:
    if isinstance(node, Comparison):
        return node.field.path == path
    if isinstance(node, AllOf | AnyOf):
        return all(_tests_only(item, path) for item in node.items)
    if isinstance(node, Negation):
        return _tests_only(node.item, path)
    return False


def _job_id_prefix(node: Node) -> str | None:
    if not isinstance(node, Comparison) or node.field.path != ("job_id",):
        return None
    if node.op == ":" and node.value.endswith("*"):
        return node.value[:-1] or None
    return node.value if node.op in ("=", ":") else None


def _label_value(node: Node) -> tuple[str, str] | None:
    if not isinstance(node, Comparison) or node.field.map_key is None:
        return None
    if node.op == "=" or (node.op == ":" and not node.value.endswith("*")):
        return node.field.map_key, node.value
    return None
