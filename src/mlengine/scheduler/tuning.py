"""Running the trials of a hyperparameter-tuning job.

A tuning job is one job whose RUNNING phase runs *trials*: each a complete run of the job's
replica plan with its own parameters (``--name=value`` flags), ``--job-dir <jobDir>/<trialId>``,
``CLOUD_ML_TRIAL_ID``, ``TF_CONFIG.task.trial`` and metric file. The
:class:`~mlengine.scheduler.loop.Scheduler` prepares the job once (its packages) and then calls
:meth:`TuningRunner.advance` on every tick, which

1. watches every active trial: ships its output to the job's log tagged with the trial id,
   folds new metric-file records into the trial's ``allMetrics``, and when the run ended
   records SUCCEEDED (``finalMetric`` = the last value reported for the metric tag) or FAILED
   (with the reason and the last lines of stderr);
2. stops, when ``enableTrialEarlyStopping`` is set, running trials that the median rule
   (``tuning/early_stopping.py``) finds behind; they count as completed
   (``isTrialStoppedEarly``, their last value as ``finalMetric``);
3. fails the job once ``maxFailedTrials`` is reached (``tuning/study.py`` has the rule);
4. fills free slots — up to ``maxParallelTrials`` running, ``maxTrials`` in all, and only as
   many as the executor can place now — with the suggester's next parameter sets;
5. ends the job when every trial has finished and the budget (or a finite space) is used up:
   SUCCEEDED if any trial succeeded, else FAILED.

Restart safety: everything is in the job row. A trial is recorded (id, parameters, run id)
in one write *before* its replicas start; after a crash the executor is asked for that run id
(``find_run``) and the trial is re-attached, or started if it never was — so no parameter set
runs twice, finished trials are never re-run and the trial count never exceeds ``maxTrials``.
The suggester is stateless and seeded from the job's name, so the search continues where it
stopped. Trials from ``resumePreviousJobId`` inform the search but are not run or counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from mlengine.domain.metrics import parse_metric_lines
from mlengine.domain.replicas import ReplicaPlan
from mlengine.domain.resources import (
    HyperparameterOutput,
    Job,
    JobState,
    TrainingOutput,
)
from mlengine.domain.training_plans import plan_for_training_input
from mlengine.executors.base import Executor, RunHandle, RunSpec, RunStatus
from mlengine.executors.cluster_env import RunIdentity
from mlengine.scheduler.records import log_entry, with_units
from mlengine.stores.base import MetadataStore, StoredJob, TrialRun
from mlengine.tuning.early_stopping import Curve, MedianStoppingRule
from mlengine.tuning.study import Study, failure_verdict, merge_metrics, sort_trials

LOG = logging.getLogger(__name__)
#: Lines of a failed trial's stderr kept for its error.
STDERR_TAIL_LINES = 8
#: Trial errors quoted in the job's error message when it fails.
QUOTED_FAILURES = 3

Logger = Callable[[StoredJob, str, str, str | None], None]


def is_tuning_job(stored: StoredJob) -> bool:
    ti = stored.job.training_input
    return ti is not None and ti.hyperparameters is not None


def active_handles(stored: StoredJob) -> list[RunHandle]:
    """Handles of the job's trials whose replicas may be running."""
    return [t.handle for t in stored.runtime.trials.values() if t.active and t.handle]


class TuningRunner:
    """Drives the trials of tuning jobs; the scheduler owns it and calls it on each tick."""

    def __init__(
        self,
        store: MetadataStore,
        executor: Executor,
        *,
        clock: Callable[[], datetime],
        base_env: dict[str, str],
        log: Logger,
    ) -> None:
        self._store = store
        self._executor = executor
        self._clock = clock
        self._base_env = base_env
        self._log = log
        self._stopping_rule = MedianStoppingRule()
        # Curves of completed trials never change; built once (numpy arrays inside).
        self._completed_curves: dict[tuple[str, str, str], Curve] = {}
        self._studies: dict[tuple[str, str], Study] = {}

    # -- the job phases -----------------------------------------------------------------------

    def begin(self, stored: StoredJob, run_id: str, python: str, workdir: str) -> StoredJob:
        """PREPARING → RUNNING: record where trials run; no trial has started yet."""
        study = self._study(stored)

        def change(s: StoredJob) -> StoredJob:
            if s.state is not JobState.PREPARING:
                return s
            output = (s.job.training_output or TrainingOutput()).model_copy(
                update={
                    "is_hyperparameter_tuning_job": True,
                    "hyperparameter_metric_tag": study.metric_tag,
                    "completed_trial_count": 0,
                    "trials": [],
                }
            )
            job = s.job.model_copy(update={"state": JobState.RUNNING, "training_output": output})
            run = {"run_id": run_id, "workdir": workdir}
            return replace(s, job=job, runtime=replace(s.runtime, run=run, python=python))

        updated = self._store.update_job(stored.project, stored.job_id, change)
        if updated.state is JobState.RUNNING:
            self._log(
                updated,
                f"Tuning: up to {study.max_trials} trial(s), {study.max_parallel} at a time, "
                f"{'maximizing' if study.maximize else 'minimizing'} '{study.metric_tag}' with "
                f"{type(study.suggester).__name__}.",
                "INFO",
                None,
            )
        return updated

    def advance(
        self, stored: StoredJob, running: list[RunHandle]
    ) -> tuple[JobState, str | None] | None:
        """One step of a RUNNING tuning job; the job's final state and message once it is
        done, else None. ``running`` are every run's handles (for placement); trials started
        here are appended to it."""
        study = self._study(stored)
        for trial_id, trial in list(stored.runtime.trials.items()):
            if trial.active:
                stored = self._watch(stored, study, trial_id)
        if study.early_stopping:
            stored = self._stop_behind(stored, study)
        trials = _trials(stored)
        verdict = failure_verdict(study, trials)
        if verdict is not None:
            return JobState.FAILED, _with_failures(verdict, stored)
        stored, exhausted = self._fill_slots(stored, study, running)
        if any(t.active for t in stored.runtime.trials.values()):
            return None
        if len(_trials(stored)) >= study.max_trials or exhausted:
            return self._outcome(stored, study, exhausted)
        return None

    def stop_all(self, stored: StoredJob, reason: str) -> StoredJob:
        """Stop every active trial (they become CANCELLED) before the job ends."""
        study = self._study(stored)
        for trial_id, trial in list(stored.runtime.trials.items()):
            if not trial.active:
                continue
            handle = trial.handle or self._executor.find_run(trial.run_id)
            if handle is None:
                stored = self._close(stored, trial_id, JobState.CANCELLED, None)
                continue
            status = self._executor.stop(handle)
            stored = self._ship(stored, study, trial_id, handle, status)
            stored = self._close(stored, trial_id, JobState.CANCELLED, None)
            self._executor.cleanup(handle)
            self._log(stored, f"Trial {trial_id} cancelled: {reason}", "INFO", trial_id)
        return stored

    # -- watching trials ----------------------------------------------------------------------

    def _watch(self, stored: StoredJob, study: Study, trial_id: str) -> StoredJob:
        trial = stored.runtime.trials[trial_id]
        handle = trial.handle
        if handle is None:
            handle = self._executor.find_run(trial.run_id)
            if handle is None:  # recorded, but the server stopped before starting it
                return self._launch(stored, study, trial_id)
            stored = self._set_run(stored, trial_id, lambda t: replace(t, handle=dict(handle)))
            self._log(stored, f"Re-attached to trial {trial_id} after a restart.", "INFO", trial_id)
        status = self._executor.poll(handle)
        stored = self._ship(stored, study, trial_id, handle, status)
        if not status.ended:
            return stored
        trial = stored.runtime.trials[trial_id]
        if status.exit_code == 0:
            stored = self._close(stored, trial_id, JobState.SUCCEEDED, None)
            self._report_success(stored, study, trial_id)
        else:
            reason = status.reason or f"The primary replica exited with status {status.exit_code}."
            tail = "\n".join(trial.stderr_tail)
            error = f"{reason}\nLast lines on stderr:\n{tail}" if tail else reason
            stored = self._close(stored, trial_id, JobState.FAILED, error)
            self._log(stored, f"Trial {trial_id} failed: {error}", "ERROR", trial_id)
        self._executor.cleanup(handle)
        return stored

    def _ship(
        self, stored: StoredJob, study: Study, trial_id: str, handle: RunHandle, status: RunStatus
    ) -> StoredJob:
        """Store new output lines (tagged with the trial) and new metric records."""
        trial = stored.runtime.trials[trial_id]
        lines, cursor = self._executor.read_logs(handle, trial.log_cursor)
        if lines:
            self._store.append_logs(
                stored.project, stored.job_id, [log_entry(x, trial_id) for x in lines]
            )
        primary = str(handle.get("primary", ""))
        errors = [x.message for x in lines if x.stream == "stderr" and x.replica == primary]
        records = parse_metric_lines(self._executor.read_metrics(handle))
        current = _find(stored, trial_id).all_metrics or []
        metrics, metric_time = merge_metrics(current, records, study.metric_tag, trial.metric_time)
        cpu = max(status.cpu_seconds, trial.cpu_seconds)
        if not lines and metric_time == trial.metric_time and cpu == trial.cpu_seconds:
            return stored
        tail = (*trial.stderr_tail, *errors)[-STDERR_TAIL_LINES:]

        def change(run: TrialRun) -> TrialRun:
            return replace(
                run,
                log_cursor=dict(cursor),
                cpu_seconds=cpu,
                metric_time=metric_time,
                stderr_tail=tail,
            )

        return self._update_trial(
            stored, trial_id, change, lambda out: out.model_copy(update={"all_metrics": metrics})
        )

    def _report_success(self, stored: StoredJob, study: Study, trial_id: str) -> None:
        out = _find(stored, trial_id)
        if out.final_metric is not None:
            self._log(
                stored,
                f"Trial {trial_id} finished: {study.metric_tag} = "
                f"{out.final_metric.objective_value:g} at step {out.final_metric.training_step}.",
                "INFO",
                trial_id,
            )
            return
        self._log(
            stored,
            f"Trial {trial_id} finished without reporting '{study.metric_tag}', so it does not "
            "inform the search. Report it with hypertune's "
            "report_hyperparameter_tuning_metric or mlengine.trainer.report_metric, or set "
            "trainingInput.hyperparameters.hyperparameterMetricTag to the tag you report.",
            "WARNING",
            trial_id,
        )

    def _stop_behind(self, stored: StoredJob, study: Study) -> StoredJob:
        trials = _trials(stored)
        completed = [
            self._completed_curve(stored, study, t)
            for t in trials
            if t.state is JobState.SUCCEEDED and not t.is_trial_stopped_early
        ]
        for trial in trials:
            run = stored.runtime.trials.get(trial.trial_id or "")
            if trial.state is not JobState.RUNNING or run is None or not run.handle:
                continue
            reason = self._stopping_rule.should_stop(
                study.curve(trial), completed, maximize=study.maximize
            )
            if reason is None:
                continue
            trial_id = str(trial.trial_id)
            handle = run.handle
            status = self._executor.stop(handle)
            stored = self._ship(stored, study, trial_id, handle, status)
            stored = self._close(stored, trial_id, JobState.SUCCEEDED, None, stopped_early=True)
            self._executor.cleanup(handle)
            self._log(stored, f"Trial {trial_id} stopped early: {reason}.", "INFO", trial_id)
        return stored

    def _completed_curve(
        self, stored: StoredJob, study: Study, trial: HyperparameterOutput
    ) -> Curve:
        key = (stored.project, stored.job_id, str(trial.trial_id))
        curve = self._completed_curves.get(key)
        if curve is None:
            curve = self._completed_curves[key] = study.curve(trial)
        return curve

    def forget(self, stored: StoredJob) -> None:
        """Drop what is cached for a job that ended."""
        prefix = (stored.project, stored.job_id)
        self._studies.pop(prefix, None)
        for key in [k for k in self._completed_curves if k[:2] == prefix]:
            del self._completed_curves[key]

    # -- starting trials ----------------------------------------------------------------------

    def _fill_slots(
        self, stored: StoredJob, study: Study, running: list[RunHandle]
    ) -> tuple[StoredJob, bool]:
        """Start as many new trials as the budget, parallelism and resources allow; whether
        the suggester ran out of unseen points."""
        if stored.state is not JobState.RUNNING or stored.runtime.cancel_requested:
            return stored, False
        trials = _trials(stored)
        active = sum(1 for t in stored.runtime.trials.values() if t.active)
        slots = min(study.max_parallel - active, study.max_trials - len(trials))
        if slots <= 0:
            return stored, False
        plan = _plan(stored)
        count = 0
        while count < slots and self._executor.fits(plan, running, [plan] * count):
            count += 1
        if count == 0:
            return stored, False
        suggestions = study.suggest(trials, self._previous_trials(stored), count)
        exhausted = len(suggestions) < count
        if not suggestions:
            return stored, exhausted
        first = len(trials) + 1
        ids = [str(first + i) for i in range(len(suggestions))]
        now = self._clock()
        base = str((stored.runtime.run or {})["run_id"])

        def change(s: StoredJob) -> StoredJob:
            if s.state is not JobState.RUNNING or s.runtime.cancel_requested:
                return s
            if len(_trials(s)) != len(trials):  # someone else started trials meanwhile
                return s
            new = [
                HyperparameterOutput(
                    trial_id=trial_id,
                    hyperparameters=study.space.format(params),
                    state=JobState.RUNNING,
                    start_time=now,
                )
                for trial_id, params in zip(ids, suggestions, strict=True)
            ]
            runs = dict(s.runtime.trials)
            runs.update({trial_id: TrialRun(run_id=f"{base}/{trial_id}") for trial_id in ids})
            job = _with_trials(s.job, [*_trials(s), *new], study)
            return replace(s, job=job, runtime=replace(s.runtime, trials=runs))

        stored = self._store.update_job(stored.project, stored.job_id, change)
        for trial_id in ids:
            if trial_id not in stored.runtime.trials:
                break
            stored = self._launch(stored, study, trial_id)
            handle = stored.runtime.trials[trial_id].handle
            if handle:
                running.append(handle)
        return stored, exhausted

    def _launch(self, stored: StoredJob, study: Study, trial_id: str) -> StoredJob:
        out = _find(stored, trial_id)
        hyperparameters = dict(out.hyperparameters or {})
        spec = self._trial_spec(stored, study, trial_id, hyperparameters)
        others = [h for h in active_handles(stored) if h.get("run_id") != spec.run_id]
        handle = self._executor.start(spec, others)
        stored = self._set_run(stored, trial_id, lambda t: replace(t, handle=dict(handle)))
        flags = " ".join(f"--{k}={v}" for k, v in hyperparameters.items())
        self._log(stored, f"Trial {trial_id} started: {flags}", "INFO", trial_id)
        return stored

    def _trial_spec(
        self, stored: StoredJob, study: Study, trial_id: str, hyperparameters: dict[str, str]
    ) -> RunSpec:
        ti = stored.job.training_input
        assert ti is not None and ti.python_module
        run = stored.runtime.run or {}
        args = list(ti.args or [])
        args += [f"--{name}={value}" for name, value in hyperparameters.items()]
        if ti.job_dir:
            args += ["--job-dir", f"{ti.job_dir.rstrip('/')}/{trial_id}"]
        workdir = Path(str(run["workdir"])) / trial_id
        workdir.mkdir(parents=True, exist_ok=True)
        identity = RunIdentity(
            job_id=stored.job_id,
            job=ti.model_dump(mode="json", exclude_none=True),
            trial_id=trial_id,
            metric_tag=study.metric_tag,
        )
        assert stored.runtime.python is not None
        return RunSpec(
            run_id=stored.runtime.trials[trial_id].run_id,
            plan=_plan(stored),
            python=stored.runtime.python,
            module=ti.python_module,
            args=args,
            workdir=str(workdir),
            identity=identity,
            base_env=self._base_env,
        )

    def _previous_trials(self, stored: StoredJob) -> list[HyperparameterOutput]:
        ti = stored.job.training_input
        previous_id = ti.hyperparameters.resume_previous_job_id if ti and ti.hyperparameters else ""
        if not previous_id:
            return []
        previous = self._store.get_job(stored.project, previous_id).job
        return list(previous.training_output.trials or []) if previous.training_output else []

    # -- the end ------------------------------------------------------------------------------

    def _outcome(
        self, stored: StoredJob, study: Study, exhausted: bool
    ) -> tuple[JobState, str | None]:
        trials = _trials(stored)
        best = next((t for t in trials if t.final_metric is not None), None)
        why = "the search space is exhausted" if exhausted else f"{len(trials)} trial(s) ran"
        if best is not None and best.final_metric is not None:
            flags = " ".join(f"--{k}={v}" for k, v in (best.hyperparameters or {}).items())
            self._log(
                stored,
                f"Tuning finished ({why}): best trial {best.trial_id}, {study.metric_tag} = "
                f"{best.final_metric.objective_value:g} with {flags}.",
                "INFO",
                None,
            )
        if any(t.state is JobState.SUCCEEDED for t in trials):
            return JobState.SUCCEEDED, None
        return JobState.FAILED, _with_failures("Every trial failed.", stored)

    # -- store helpers ----------------------------------------------------------------------

    def _study(self, stored: StoredJob) -> Study:
        """The job's study, built once per job (its spec never changes after submit)."""
        key = (stored.project, stored.job_id)
        study = self._studies.get(key)
        if study is None:
            ti = stored.job.training_input
            assert ti is not None and ti.hyperparameters is not None
            study = Study.from_spec(ti.hyperparameters, project=key[0], job_id=key[1])
            self._studies[key] = study
        return study

    def _close(
        self,
        stored: StoredJob,
        trial_id: str,
        state: JobState,
        error: str | None,
        *,
        stopped_early: bool = False,
    ) -> StoredJob:
        now = self._clock()

        def output(out: HyperparameterOutput) -> HyperparameterOutput:
            metrics = out.all_metrics or []
            update: dict[str, object] = {"state": state, "end_time": now}
            if metrics and state is JobState.SUCCEEDED:
                update["final_metric"] = metrics[-1]
            if stopped_early:
                update["is_trial_stopped_early"] = True
            return out.model_copy(update=update)

        return self._update_trial(
            stored, trial_id, lambda t: replace(t, active=False, error=error), output
        )

    def _set_run(
        self, stored: StoredJob, trial_id: str, change: Callable[[TrialRun], TrialRun]
    ) -> StoredJob:
        return self._update_trial(stored, trial_id, change, lambda out: out)

    def _update_trial(
        self,
        stored: StoredJob,
        trial_id: str,
        run_change: Callable[[TrialRun], TrialRun],
        output_change: Callable[[HyperparameterOutput], HyperparameterOutput],
    ) -> StoredJob:
        study = self._study(stored)

        def change(s: StoredJob) -> StoredJob:
            runs = dict(s.runtime.trials)
            runs[trial_id] = run_change(runs[trial_id])
            trials = [output_change(t) if t.trial_id == trial_id else t for t in _trials(s)]
            cpu = sum(r.cpu_seconds for r in runs.values())
            job = with_units(_with_trials(s.job, trials, study), cpu)
            return replace(s, job=job, runtime=replace(s.runtime, trials=runs, cpu_seconds=cpu))

        return self._store.update_job(stored.project, stored.job_id, change)


def _trials(stored: StoredJob) -> list[HyperparameterOutput]:
    output = stored.job.training_output
    return list(output.trials or []) if output else []


def _find(stored: StoredJob, trial_id: str) -> HyperparameterOutput:
    for trial in _trials(stored):
        if trial.trial_id == trial_id:
            return trial
    raise KeyError(trial_id)


def _with_trials(job: Job, trials: Sequence[HyperparameterOutput], study: Study) -> Job:
    ordered = sort_trials(trials, study.maximize)
    completed = sum(1 for t in ordered if t.state in (JobState.SUCCEEDED, JobState.FAILED))
    output = (job.training_output or TrainingOutput()).model_copy(
        update={"trials": ordered, "completed_trial_count": completed}
    )
    return job.model_copy(update={"training_output": output})


def _with_failures(message: str, stored: StoredJob) -> str:
    failed = [
        (trial_id, run.error)
        for trial_id, run in sorted(stored.runtime.trials.items(), key=lambda kv: int(kv[0]))
        if run.error
    ]
    quoted = [f"Trial {trial_id}: {error}" for trial_id, error in failed[:QUOTED_FAILURES]]
    more = f"\n(and {len(failed) - QUOTED_FAILURES} more)" if len(failed) > QUOTED_FAILURES else ""
    return "\n".join([message, *quoted]) + more


def _plan(stored: StoredJob) -> ReplicaPlan:
    ti = stored.job.training_input
    assert ti is not None
    return plan_for_training_input(ti)
