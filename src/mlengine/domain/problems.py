"""Several problems in one request, reported as one InvalidArgument.

Parsing and validation collect every problem they find rather than stopping at the first, so
a user fixes a config file in one round.  The resulting :class:`InvalidArgument` carries the
*first* problem's field path in ``field``; its message is the first problem's message,
followed by the others (each of which names its own field)::

    Invalid value at 'trainingInput.workerCount' ("four"): expected an integer (...).
    2 more problems:
    - Unknown field 'trainingInput.fooBar': remove it or check the spelling; ...
    - ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mlengine.domain.errors import InvalidArgument

#: Messages listed in one error; the rest are counted, to keep error bodies readable.
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the lowerCamelCase field path ("" = the whole body)."""

    field: str
    message: str


class Problems:
    """An ordered collection of :class:`Problem` that can be raised as one InvalidArgument."""

    def __init__(self) -> None:
        self._items: list[Problem] = []

    def add(self, field: str, message: str) -> None:
        self._items.append(Problem(field, message))

    def capture(self, check: Callable[[], object]) -> None:
        """Run ``check``; an InvalidArgument it raises is recorded as a problem instead."""
        try:
            check()
        except InvalidArgument as exc:
            self.add(exc.field or "", exc.message)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def to_error(self) -> InvalidArgument:
        """The single InvalidArgument describing all problems (there must be at least one)."""
        if not self._items:
            raise ValueError("Problems.to_error() called with no problems")
        first, rest = self._items[0], self._items[1:]
        if not rest:
            return InvalidArgument(first.message, field=first.field or None)
        listed = rest[: MAX_LISTED_PROBLEMS - 1]
        lines = [first.message, f"{len(rest)} more problem{'s' if len(rest) > 1 else ''}:"]
        lines += [f"- {problem.message}" for problem in listed]
        if len(rest) > len(listed):
            lines.append(f"- ... and {len(rest) - len(listed)} more")
        return InvalidArgument("\n".join(lines), field=first.field or None)

    def raise_if_any(self) -> None:
        """Raise :meth:`to_error` when any problem was added."""
        if self._items:
            raise self.to_error()
