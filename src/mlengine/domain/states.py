"""Job.State and the table of allowed transitions.

The same enum is used for a job and for each hyperparameter trial
(``HyperparameterOutput.state``).  Lifecycle::

    QUEUED ───> PREPARING ───> RUNNING ───> SUCCEEDED
     │  │           │             │
     │  │           └──────┬──────┘
     │  │                  v
     │  └─────────────> CANCELLING ───> CANCELLED
     └──────────────────────────────────> CANCELLED   (directly: nothing to stop yet)

    QUEUED, PREPARING, RUNNING, CANCELLING ───> FAILED

Decisions where the public API is silent:

* ``QUEUED -> CANCELLED`` is allowed directly: a queued job has no process to stop, so the
  intermediate CANCELLING state would be observable for no reason.  PREPARING and RUNNING
  jobs have something to stop and must pass through CANCELLING.
* Any non-terminal state, CANCELLING included, may move to FAILED (an executor can lose a
  process while stopping it).
* PREPARING cannot be skipped: executors report it while they install the trainer package.
* A state never "transitions" to itself; callers that want idempotent updates check first.
* ``STATE_UNSPECIFIED`` is the wire default, not a lifecycle state: nothing enters or leaves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from mlengine.domain.errors import FailedPrecondition


class JobState(StrEnum):
    """``GoogleCloudMlV1__Job.state`` — exactly the discovery document's values."""

    STATE_UNSPECIFIED = "STATE_UNSPECIFIED"
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED: the job will never change again."""
        return self in TERMINAL_STATES

    def is_active(self) -> bool:
        """True for QUEUED, PREPARING, RUNNING and CANCELLING: the job may still change."""
        return self in ACTIVE_STATES


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
)
ACTIVE_STATES: frozenset[JobState] = frozenset(
    {JobState.QUEUED, JobState.PREPARING, JobState.RUNNING, JobState.CANCELLING}
)

#: The state a newly created job starts in.
INITIAL_STATE = JobState.QUEUED

#: old state -> states it may move to.  Terminal states and STATE_UNSPECIFIED map to nothing.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = MappingProxyType(
    {
        JobState.STATE_UNSPECIFIED: frozenset(),
        JobState.QUEUED: frozenset(
            {JobState.PREPARING, JobState.FAILED, JobState.CANCELLING, JobState.CANCELLED}
        ),
        JobState.PREPARING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLING}),
        JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLING}),
        JobState.CANCELLING: frozenset({JobState.CANCELLED, JobState.FAILED}),
        JobState.SUCCEEDED: frozenset(),
        JobState.FAILED: frozenset(),
        JobState.CANCELLED: frozenset(),
    }
)


def is_terminal(state: JobState) -> bool:
    """True when ``state`` is SUCCEEDED, FAILED or CANCELLED."""
    return state in TERMINAL_STATES


def can_transition(old: JobState, new: JobState) -> bool:
    """True when :data:`TRANSITIONS` allows ``old -> new``."""
    return new in TRANSITIONS[old]


def check_transition(old: JobState, new: JobState, *, subject: str = "job") -> None:
    """Raise FailedPrecondition unless ``old -> new`` is allowed.

    ``subject`` names the resource in the message, e.g. ``"job 'census_1'"`` or ``"trial 3"``.
    """
    if can_transition(old, new):
        return
    if old.is_terminal():
        reason = f"{old.value} is a terminal state and the {subject} can no longer change"
    else:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing"
        reason = f"from {old.value} it may only move to {allowed}"
    raise FailedPrecondition(
        f"Cannot move {subject} from {old.value} to {new.value}: {reason}.", field="state"
    )
