"""Small record-keeping helpers shared by the scheduler loop and the tuning runner."""

from __future__ import annotations

import re

from mlengine.domain.resources import Job, TrainingOutput
from mlengine.executors.base import LogLine
from mlengine.stores.base import LogEntry


def log_entry(line: LogLine, trial_id: str | None = None) -> LogEntry:
    """A captured line as stored (``trial_id`` tags the lines of a tuning trial)."""
    return LogEntry(
        time=line.time,
        task_name=line.replica,
        message=line.message,
        stream=line.stream,
        severity=line_severity(line.message, line.stream),
        trial_id=trial_id,
    )


_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_SEVERITY = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def line_severity(message: str, stream: str) -> str:
    """A line's severity: the level a logging library wrote near its start (Python's logging
    prints INFO records on stderr), else ERROR for stderr and INFO for stdout."""
    match = _LEVEL.search(message[:64])
    if match:
        return _SEVERITY.get(match.group(1), match.group(1))
    return "ERROR" if stream == "stderr" else "INFO"


def with_units(job: Job, cpu_seconds: float) -> Job:
    """``job`` with consumedMLUnits for ``cpu_seconds`` of CPU time (1 unit = 1 CPU-hour)."""
    output = job.training_output or TrainingOutput()
    output = output.model_copy(update={"consumed_ml_units": round(cpu_seconds / 3600.0, 6)})
    return job.model_copy(update={"training_output": output})
