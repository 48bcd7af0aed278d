"""Metric reporting in the cloudml-hypertune file format.

The platform reads one file per replica (``CLOUD_ML_HP_METRIC_FILE``). The format is the one
the ``cloudml-hypertune`` package writes, so trainers using either are read the same way:
one JSON object per line, keys sorted, holding ``timestamp`` (float epoch seconds),
``trial`` (string), ``global_step`` (string integer, ``"0"`` when not given),
``checkpoint_path`` (string) and ``<tag>`` (the value as ``str(float(value))``). The writer
keeps the latest :data:`MAX_ENTRIES` entries and rewrites the whole file on every report.

Unlike the original package we rewrite atomically (temp file + rename), so a reader polling
the file while the trial runs never sees a half-written line.
"""

from __future__ import annotations

import collections
import json
import math
import os
import tempfile
import threading
import time
from typing import Any

DEFAULT_METRIC_TAG = "training/hptuning/metric"
DEFAULT_METRIC_FILE = "/tmp/hypertune/output.metrics"
MAX_ENTRIES = 100


class MetricReporter:
    """Writes metric entries for one replica.

    ``path`` defaults to ``$CLOUD_ML_HP_METRIC_FILE`` (else :data:`DEFAULT_METRIC_FILE`) and
    ``trial_id`` to ``$CLOUD_ML_TRIAL_ID`` (else ``"0"``), both read when the reporter is built.
    """

    def __init__(self, path: str | None = None, trial_id: str | None = None) -> None:
        self.path = path or os.environ.get("CLOUD_ML_HP_METRIC_FILE") or DEFAULT_METRIC_FILE
        self.trial_id = (
            trial_id if trial_id is not None else os.environ.get("CLOUD_ML_TRIAL_ID", "0")
        )
        self._entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_ENTRIES)
        self._lock = threading.Lock()

    def report(
        self, tag: str | None, value: float, step: int | None = None, checkpoint_path: str = ""
    ) -> None:
        """Record ``value`` for ``tag`` at ``step`` and rewrite the metric file.

        Raises ``ValueError`` for a value that is not a finite number: a NaN objective would
        silently poison the tuner, so we refuse it where the mistake is made.
        """
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {tag!r} must be a finite number, got {value!r}")
        entry = {
            "timestamp": time.time(),
            "trial": str(self.trial_id),
            tag or DEFAULT_METRIC_TAG: str(number),
            "global_step": str(int(step) if step else 0),
            "checkpoint_path": checkpoint_path,
        }
        with self._lock:
            self._entries.append(entry)
            self._rewrite()

    def _rewrite(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".metrics-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                for entry in self._entries:
                    out.write(json.dumps(entry, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


_default_reporter: MetricReporter | None = None
_default_lock = threading.Lock()


def report_metric(tag: str, value: float, step: int | None = None) -> None:
    """Report a metric value for hyperparameter tuning and monitoring.

    ``tag`` must match the job's ``hyperparameterMetricTag`` for the value to be the tuning
    objective (``$CLOUD_ML_HP_METRIC_TAG`` holds it inside a trial). The last value reported
    for that tag becomes the trial's ``finalMetric``.
    """
    global _default_reporter
    with _default_lock:
        if _default_reporter is None:
            _default_reporter = MetricReporter()
        reporter = _default_reporter
    reporter.report(tag, value, step)
