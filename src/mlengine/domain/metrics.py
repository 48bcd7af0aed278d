"""Reading metric files in the cloudml-hypertune format.

The trainer side writes them (``mlengine.trainer.report_metric`` or the ``hypertune``
package): one JSON object per line with ``timestamp``, ``trial``, ``global_step``,
optionally ``checkpoint_path``, and one ``<tag>: "<float>"`` entry. This module turns such
text into :class:`MetricRecord`\\ s, tolerating what a live file can hold: a blank or
half-written last line, unknown keys, values written as numbers instead of strings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

_RESERVED = frozenset({"timestamp", "trial", "global_step", "checkpoint_path"})


@dataclass(frozen=True)
class MetricRecord:
    """One reported value."""

    tag: str
    value: float
    step: int
    timestamp: float
    trial: str = "0"


def parse_metric_lines(text: str) -> list[MetricRecord]:
    """All well-formed records of ``text``, in file order. Malformed lines are skipped."""
    records: list[MetricRecord] = []
    for line in text.splitlines():
        records.extend(_parse_line(line))
    return records


def _parse_line(line: str) -> list[MetricRecord]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return []
    if not isinstance(entry, dict):
        return []
    try:
        timestamp = float(entry.get("timestamp", 0.0))
        step = int(float(entry.get("global_step", 0) or 0))
    except (TypeError, ValueError):
        return []
    trial = str(entry.get("trial", "0"))
    out = []
    for key, raw in entry.items():
        if key in _RESERVED:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(MetricRecord(str(key), value, step, timestamp, trial))
    return out


def final_metric(records: list[MetricRecord], tag: str) -> MetricRecord | None:
    """The last value reported for ``tag`` (latest timestamp; file order breaks ties)."""
    best: MetricRecord | None = None
    for record in records:
        if record.tag == tag and (best is None or record.timestamp >= best.timestamp):
            best = record
    return best


def latest_by_tag(records: list[MetricRecord]) -> dict[str, MetricRecord]:
    """The last value of every tag, for summaries."""
    out: dict[str, MetricRecord] = {}
    for record in records:
        current = out.get(record.tag)
        if current is None or record.timestamp >= current.timestamp:
            out[record.tag] = record
    return out
