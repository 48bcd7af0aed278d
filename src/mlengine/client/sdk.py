"""The Python SDK: ``mlengine.Client``, an HTTP client of the mlengine server (ml v1 REST API).

Everything it returns is the wire form of the v1 API: plain ``dict`` objects with
lowerCamelCase keys, int64 values as strings, timestamps as RFC 3339 strings — exactly what
``--format json`` prints and what ``googleapiclient`` would return. The one exception is
:meth:`Client.job`, a small :class:`JobView` for notebooks (an HTML repr and shortcuts).

Errors: every non-2xx answer is rebuilt into the :class:`~mlengine.domain.errors.MlEngineError`
subclass of its canonical code (``NotFound``, ``InvalidArgument`` …) with the server's message
and the field at fault. A server that cannot be reached raises ``Unavailable`` naming the URL.

    with Client() as client:                      # MLENGINE_SERVER, else a local server
        client.create_job({"jobId": "j1", "trainingInput": {...}})
        for entry in client.follow_logs("j1"):
            print(entry["message"])
        client.get_job("j1")["state"]
        client.create_model("census")
        client.create_version("census", "v1", deployment_uri="/srv/census/1", wait=True)
        client.predict("census", [[1.0, 2.0]])["predictions"]
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from mlengine.config import Settings
from mlengine.domain.errors import (
    HTTP_STATUS,
    Code,
    MlEngineError,
    Unavailable,
    error_for_code,
)

#: Seconds an HTTP request may take before it fails with UNAVAILABLE.
DEFAULT_TIMEOUT = 30.0
#: Seconds between polls of :meth:`Client.follow_logs`, :meth:`Client.wait_job` and
#: :meth:`Client.wait_operation`.
DEFAULT_POLL_INTERVAL = 1.0
#: Log entries asked for per request.
DEFAULT_LOG_LIMIT = 1000

#: Read-modify-write attempts of :meth:`Client.relabel_job` when the etag keeps changing.
_RELABEL_ATTEMPTS = 5

Body = dict[str, Any]

_TERMINAL_JOB_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
#: HTTP status -> the most likely canonical code, for answers without an error envelope.
_CODE_BY_HTTP = {http: code for code, (_, http) in reversed(HTTP_STATUS.items())}
_CODE_BY_HTTP[500] = Code.INTERNAL
_CODE_BY_RPC_NUMBER = {number: code for code, (number, _) in HTTP_STATUS.items()}


class Client:
    """A connection to one mlengine server, for one project.

    ``url`` defaults to ``settings.server_url`` (``MLENGINE_SERVER``); when neither is set,
    the first request starts a local server in the background (as the CLI does) and uses it.
    ``project`` and ``token`` default to the settings (``MLENGINE_PROJECT``,
    ``MLENGINE_TOKEN``). One HTTP connection pool serves every call; use the client as a
    context manager or call :meth:`close`. ``transport`` replaces the network (tests pass an
    ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        project: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings or Settings.from_env()
        self._url = (url or self._settings.server_url or "").rstrip("/") or None
        self.project = project or self._settings.project
        token = token or self._settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    # -- connection ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL; resolving it may start a local server (first use only)."""
        if self._url is None:
            from mlengine.client.local_server import ensure_local_server

            self._url = ensure_local_server(self._settings).rstrip("/")
        return self._url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(url={self._url!r}, project={self.project!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> Body:
        """Send one request to ``path`` (``/v1/...``) and return the decoded JSON body.

        The building block of every method here; raises the rebuilt MlEngineError on a
        non-2xx answer and ``Unavailable`` when the server cannot be reached.
        """
        url = self.url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, url, params=query, json=json, content=content)
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"Cannot reach the mlengine server at {self.url} ({exc}). Start one with "
                "`mlengine server start`, or point MLENGINE_SERVER (or --server) at a "
                "running server."
            ) from exc
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"The mlengine server at {self.url} did not answer {method} {path} in time "
                f"({exc.__class__.__name__})."
            ) from exc
        except httpx.TransportError as exc:
            raise Unavailable(
                f"Talking to the mlengine server at {self.url} failed: {exc}"
            ) from exc
        if response.is_success:
            return _json_body(response)
        raise error_from_response(response)

    # -- jobs ---------------------------------------------------------------------------

    def _jobs(self, job_id: str | None = None) -> str:
        base = f"/v1/projects/{self.project}/jobs"
        return base if job_id is None else f"{base}/{job_id}"

    def create_job(self, body: Mapping[str, Any]) -> Body:
        """jobs.create: submit a Job (wire form, ``jobId`` required); returns it as queued."""
        return self.request("POST", self._jobs(), json=dict(body))

    def get_job(self, job_id: str) -> Body:
        """jobs.get: the Job, with ``state``, times, ``trainingOutput`` and ``etag``."""
        return self.request("GET", self._jobs(job_id))

    def list_jobs_page(
        self,
        filter: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Body:
        """One page of jobs.list: ``{"jobs": [...], "nextPageToken": "..."}`` (newest first).

        ``filter`` as in gcloud: ``jobId:census*``, ``state=FAILED``, ``labels.team=a`` …
        Both keys are absent on an empty last page.
        """
        params = {"filter": filter, "pageSize": page_size, "pageToken": page_token}
        return self.request("GET", self._jobs(), params=params)

    def list_jobs(self, filter: str | None = None, page_size: int | None = None) -> Iterator[Body]:
        """Every job matching ``filter``, newest first, fetching pages as the caller iterates."""
        token: str | None = None
        while True:
            page = self.list_jobs_page(filter=filter, page_size=page_size, page_token=token)
            yield from page.get("jobs", [])
            token = page.get("nextPageToken") or None
            if token is None:
                return

    def cancel_job(self, job_id: str) -> None:
        """jobs.cancel: a QUEUED job ends CANCELLED at once, a running one goes CANCELLING.

        Raises FailedPrecondition for a job that already ended.
        """
        self.request("POST", self._jobs(job_id) + ":cancel", json={})

    def update_job_labels(
        self, job_id: str, labels: Mapping[str, str], etag: str | None = None
    ) -> Body:
        """jobs.patch: replace the job's labels. With ``etag`` (from :meth:`get_job`) the
        server refuses the change (ABORTED) if the job changed since it was read."""
        body: Body = {"labels": dict(labels)}
        mask = "labels"
        if etag is not None:
            body["etag"] = etag
            mask = "labels,etag"
        return self.request("PATCH", self._jobs(job_id), params={"updateMask": mask}, json=body)

    def relabel_job(
        self,
        job_id: str,
        update: Mapping[str, str] | None = None,
        remove: Iterable[str] = (),
        clear: bool = False,
    ) -> tuple[Body, bool]:
        """Change some labels: drop all (``clear``), then ``remove`` keys, then ``update``.

        A read-modify-write guarded by the etag, retried when the job changed in between (a
        running job's etag changes with its state). Returns the job and whether its labels
        changed; nothing is written when they would not.
        """
        for _ in range(_RELABEL_ATTEMPTS - 1):
            try:
                return self._relabel_once(job_id, update, remove, clear)
            except MlEngineError as exc:
                if exc.code is not Code.ABORTED:
                    raise
        return self._relabel_once(job_id, update, remove, clear)

    def _relabel_once(
        self,
        job_id: str,
        update: Mapping[str, str] | None,
        remove: Iterable[str],
        clear: bool,
    ) -> tuple[Body, bool]:
        job = self.get_job(job_id)
        old = dict(job.get("labels") or {})
        new = {} if clear else dict(old)
        for key in remove:
            new.pop(key, None)
        new.update(update or {})
        if new == old:
            return job, False
        return self.update_job_labels(job_id, new, etag=job.get("etag")), True

    def job_logs(
        self,
        job_id: str,
        after: int = 0,
        task_name: str | None = None,
        limit: int = DEFAULT_LOG_LIMIT,
    ) -> Body:
        """One read of the job's log: ``{"job": Job, "entries": [...]}``.

        Entries have ``seq`` (a string, increasing), ``time``, ``taskName`` (replica such as
        ``master-replica-0``, or ``service``), ``trialId``, ``stream``, ``severity`` and
        ``message``; only those with ``seq`` > ``after`` are returned, at most ``limit``.
        The job is read before the entries, so once it shows an ``endTime`` the entries of
        that same answer reach the end of the log.
        """
        params = {"after": after, "taskName": task_name, "limit": limit}
        return self.request("GET", self._jobs(job_id) + "/logs", params=params)

    def follow_logs(
        self,
        job_id: str,
        task_name: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        *,
        after: int = 0,
    ) -> Iterator[Body]:
        """Yield the job's log entries as they arrive, from the first (or after ``after``).

        Ends once the job has an ``endTime`` and a read returned nothing, so no line is
        lost, the last one included. Closing the generator (or Ctrl-C) stops following;
        the job goes on.
        """
        while True:
            page = self.job_logs(job_id, after=after, task_name=task_name)
            entries = page.get("entries") or []
            for entry in entries:
                after = max(after, int(entry.get("seq", after)))
                yield entry
            ended = bool((page.get("job") or {}).get("endTime"))
            if ended and not entries:
                return
            if not entries or (len(entries) < DEFAULT_LOG_LIMIT and not ended):
                time.sleep(poll_interval)

    def wait_job(
        self,
        job_id: str,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | None = None,
    ) -> Body:
        """Poll until the job is SUCCEEDED, FAILED or CANCELLED; return it.

        Raises MlEngineError(DEADLINE_EXCEEDED) if ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job.get("state") in _TERMINAL_JOB_STATES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise MlEngineError(
                    f"Job {job_id} is still {job.get('state')} after {timeout:g} s.",
                    code=Code.DEADLINE_EXCEEDED,
                )
            time.sleep(poll_interval)

    def upload_package(self, path: str | Path) -> str:
        """Upload a package archive (sdist, wheel, tar.gz); return its ``packageUri``."""
        source = Path(path)
        body = self.request(
            "POST",
            f"/upload/v1/projects/{self.project}/packages",
            params={"filename": source.name},
            content=source.read_bytes(),
        )
        return str(body["packageUri"])

    def trials_dataframe(self, job_id: str) -> Any:
        """``trainingOutput.trials`` as a DataFrame (one row per trial, in the API's
        best-first order): trialId, state, objectiveValue, trainingStep, the times,
        isTrialStoppedEarly, then one column per hyperparameter. Needs pandas.

        Returns a ``pandas.DataFrame`` (typed ``Any``: pandas ships no type information).
        """
        try:
            import pandas  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:  # pragma: no cover - pandas is a dev dependency
            raise ImportError("trials_dataframe needs pandas: pip install pandas") from exc
        trials = (self.get_job(job_id).get("trainingOutput") or {}).get("trials") or []
        return pandas.DataFrame([_trial_row(t) for t in trials], columns=_trial_columns(trials))

    def job(self, job_id: str) -> JobView:
        """The job as a :class:`JobView` (an HTML table in notebooks)."""
        return JobView(self.get_job(job_id), client=self)

    # -- operations ---------------------------------------------------------------------

    def operation_name(self, name: str) -> str:
        """``projects/{p}/operations/{id}`` for a bare id; a full name is kept as given."""
        return (
            name if name.startswith("projects/") else f"projects/{self.project}/operations/{name}"
        )

    def get_operation(self, name: str) -> Body:
        """operations.get, by bare id or full name."""
        return self.request("GET", f"/v1/{self.operation_name(name)}")

    def list_operations_page(
        self, page_size: int | None = None, page_token: str | None = None
    ) -> Body:
        """One page of operations.list: ``{"operations": [...], "nextPageToken": "..."}``."""
        params = {"pageSize": page_size, "pageToken": page_token}
        return self.request("GET", f"/v1/projects/{self.project}/operations", params=params)

    def list_operations(self, page_size: int | None = None) -> Iterator[Body]:
        """Every operation of the project, fetching pages as the caller iterates."""
        token: str | None = None
        while True:
            page = self.list_operations_page(page_size=page_size, page_token=token)
            yield from page.get("operations", [])
            token = page.get("nextPageToken") or None
            if token is None:
                return

    def cancel_operation(self, name: str) -> None:
        """operations.cancel: ask the operation to stop (it ends with error CANCELLED)."""
        self.request("POST", f"/v1/{self.operation_name(name)}:cancel", json={})

    def wait_operation(
        self,
        name: str,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Body:
        """Poll until the operation is done and return it.

        Raises the operation's error rebuilt as an MlEngineError when it failed (or was
        cancelled), and MlEngineError(DEADLINE_EXCEEDED) if ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            operation = self.get_operation(name)
            if operation.get("done"):
                if "error" in operation:
                    raise error_from_status(operation["error"], subject=operation.get("name"))
                return operation
            if deadline is not None and time.monotonic() >= deadline:
                raise MlEngineError(
                    f"Operation {operation.get('name', name)} is not done after {timeout:g} s; "
                    "it goes on. Wait again with `mlengine operations wait`.",
                    code=Code.DEADLINE_EXCEEDED,
                )
            time.sleep(poll_interval)

    # -- models -------------------------------------------------------------------------

    def model_name(self, model: str) -> str:
        """``projects/{p}/models/{m}`` for a bare id; a full name is kept as given."""
        return model if model.startswith("projects/") else f"projects/{self.project}/models/{model}"

    def version_name(self, model: str, version: str) -> str:
        """``projects/{p}/models/{m}/versions/{v}``; a full version name is kept as given."""
        if version.startswith("projects/"):
            return version
        return f"{self.model_name(model)}/versions/{version}"

    def create_model(self, model: str | Mapping[str, Any], **fields: Any) -> Body:
        """models.create: ``model`` is the bare id (or a whole Model body); ``fields`` are
        more Model fields, in snake_case or wire form (``description=…``, ``labels={…}``,
        ``regions=[…]``, ``online_prediction_logging=True``). Returns the Model."""
        body = _resource_body(model, fields)
        return self.request("POST", f"/v1/projects/{self.project}/models", json=body)

    def get_model(self, model: str) -> Body:
        """models.get: the Model, with ``defaultVersion`` once it has one."""
        return self.request("GET", f"/v1/{self.model_name(model)}")

    def list_models_page(
        self,
        filter: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Body:
        """One page of models.list: ``{"models": [...], "nextPageToken": "..."}``."""
        params = {"filter": filter, "pageSize": page_size, "pageToken": page_token}
        return self.request("GET", f"/v1/projects/{self.project}/models", params=params)

    def list_models(
        self, filter: str | None = None, page_size: int | None = None
    ) -> Iterator[Body]:
        """Every model matching ``filter`` (``name:census*``, ``labels.team=x``), newest
        first, fetching pages as the caller iterates."""
        return self._walk(lambda token: self.list_models_page(filter, page_size, token), "models")

    def delete_model(self, model: str, *, wait: bool = False, timeout: float | None = None) -> Body:
        """models.delete (the model must have no versions): returns the Operation, or with
        ``wait`` the done Operation (raising its error, as :meth:`wait_operation`)."""
        operation = self.request("DELETE", f"/v1/{self.model_name(model)}")
        return self._maybe_wait(operation, wait, timeout)

    def patch_model(
        self,
        model: str,
        body: Mapping[str, Any],
        update_mask: str | Iterable[str],
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Body:
        """models.patch: change the fields named by ``update_mask`` (``description``,
        ``labels``, ``defaultVersion.name``) to their values in ``body``. Returns the
        Operation (its ``response`` is the Model), done when ``wait``."""
        operation = self.request(
            "PATCH",
            f"/v1/{self.model_name(model)}",
            params={"updateMask": _mask(update_mask)},
            json=dict(body),
        )
        return self._maybe_wait(operation, wait, timeout)

    # -- versions -----------------------------------------------------------------------

    def create_version(
        self,
        model: str,
        version: str | Mapping[str, Any],
        *,
        wait: bool = False,
        timeout: float | None = None,
        **fields: Any,
    ) -> Body:
        """versions.create: ``version`` is the bare id (or a whole Version body); ``fields``
        are more Version fields in snake_case or wire form (``deployment_uri="/srv/m"``,
        ``framework="SCIKIT_LEARN"``, ``labels={…}``).

        Returns the Operation; the server copies and loads the model in the background. With
        ``wait`` returns the done Operation (``response`` is the READY Version) or raises the
        reason the version FAILED.
        """
        body = _resource_body(version, fields)
        operation = self.request("POST", f"/v1/{self.model_name(model)}/versions", json=body)
        return self._maybe_wait(operation, wait, timeout)

    def get_version(self, model: str, version: str) -> Body:
        """versions.get: the Version, with ``state`` and ``isDefault``."""
        return self.request("GET", f"/v1/{self.version_name(model, version)}")

    def list_versions_page(
        self,
        model: str,
        filter: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Body:
        """One page of versions.list: ``{"versions": [...], "nextPageToken": "..."}``."""
        params = {"filter": filter, "pageSize": page_size, "pageToken": page_token}
        return self.request("GET", f"/v1/{self.model_name(model)}/versions", params=params)

    def list_versions(
        self, model: str, filter: str | None = None, page_size: int | None = None
    ) -> Iterator[Body]:
        """Every version of ``model`` matching ``filter`` (``state=READY``, ``name:v*``),
        newest first, fetching pages as the caller iterates."""
        return self._walk(
            lambda token: self.list_versions_page(model, filter, page_size, token), "versions"
        )

    def delete_version(
        self, model: str, version: str, *, wait: bool = False, timeout: float | None = None
    ) -> Body:
        """versions.delete: returns the Operation (the server removes the files in the
        background), or with ``wait`` the done Operation."""
        operation = self.request("DELETE", f"/v1/{self.version_name(model, version)}")
        return self._maybe_wait(operation, wait, timeout)

    def set_default_version(self, model: str, version: str) -> Body:
        """versions.setDefault: make the (READY) version the model's default; returns it."""
        return self.request("POST", f"/v1/{self.version_name(model, version)}:setDefault", json={})

    def patch_version(
        self,
        model: str,
        version: str,
        body: Mapping[str, Any],
        update_mask: str | Iterable[str],
        *,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Body:
        """versions.patch: change the fields named by ``update_mask`` (``description``,
        ``labels``, ``requestLoggingConfig``, ``autoScaling.minNodes``,
        ``manualScaling.nodes``). Returns the Operation (``response`` is the Version), done
        when ``wait``."""
        operation = self.request(
            "PATCH",
            f"/v1/{self.version_name(model, version)}",
            params={"updateMask": _mask(update_mask)},
            json=dict(body),
        )
        return self._maybe_wait(operation, wait, timeout)

    # -- prediction ---------------------------------------------------------------------

    def predict(
        self, model: str, instances: Sequence[Any], version: str | None = None, **kwargs: Any
    ) -> Body:
        """projects.predict: ``{"predictions": [...]}``, one per instance, in order.

        Without ``version`` the model's default version answers. ``kwargs`` become other
        top-level request keys (``signature_name="serving_default"``, ``probabilities=True``
        for scikit-learn classifiers, keys of a custom routine). A model that fails on the
        instances raises ``InvalidArgument`` with the server's ``Prediction failed: …``.
        """
        target = self.model_name(model) if version is None else self.version_name(model, version)
        body = {"instances": list(instances), **kwargs}
        return self.request("POST", f"/v1/{target}:predict", json=body)

    # -- helpers ------------------------------------------------------------------------

    def _maybe_wait(self, operation: Body, wait: bool, timeout: float | None) -> Body:
        if not wait:
            return operation
        if operation.get("done"):
            if "error" in operation:
                raise error_from_status(operation["error"], subject=operation.get("name"))
            return operation
        return self.wait_operation(str(operation["name"]), timeout=timeout)

    @staticmethod
    def _walk(fetch: Callable[[str | None], Body], key: str) -> Iterator[Body]:
        token: str | None = None
        while True:
            page = fetch(token)
            yield from page.get(key, [])
            token = page.get("nextPageToken") or None
            if token is None:
                return


class JobView:
    """A job for notebooks: the wire-form ``data`` plus an HTML repr and shortcuts."""

    def __init__(self, data: Mapping[str, Any], *, client: Client | None = None) -> None:
        self.data: Body = dict(data)
        self._client = client

    @property
    def job_id(self) -> str:
        return str(self.data.get("jobId", ""))

    @property
    def state(self) -> str:
        return str(self.data.get("state", "STATE_UNSPECIFIED"))

    @property
    def trials(self) -> list[Body]:
        return list((self.data.get("trainingOutput") or {}).get("trials") or [])

    def refresh(self) -> JobView:
        """Read the job again from the server (returns self)."""
        if self._client is None:
            raise RuntimeError("this JobView has no client to refresh from")
        self.data = self._client.get_job(self.job_id)
        return self

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __repr__(self) -> str:
        return f"JobView(jobId={self.job_id!r}, state={self.state!r})"

    def _repr_html_(self) -> str:
        rows = [("jobId", self.job_id), ("state", self.state)]
        rows += [
            (k, str(self.data[k]))
            for k in ("createTime", "startTime", "endTime", "errorMessage")
            if self.data.get(k)
        ]
        ti = self.data.get("trainingInput") or {}
        rows += [
            (f"trainingInput.{k}", str(ti[k]))
            for k in ("scaleTier", "pythonModule", "region", "jobDir")
            if ti.get(k)
        ]
        table = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        out = f"<table>{table}</table>"
        if self.trials:
            columns = _trial_columns(self.trials)
            head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
            body = "".join(
                "<tr>"
                + "".join(f"<td>{html.escape(_text(_trial_row(t).get(c)))}</td>" for c in columns)
                + "</tr>"
                for t in self.trials
            )
            out += f"<table><tr>{head}</tr>{body}</table>"
        return out


def _text(value: object) -> str:
    return "" if value is None else str(value)


_TRIAL_FIELDS = (
    "trialId",
    "state",
    "objectiveValue",
    "trainingStep",
    "startTime",
    "endTime",
    "isTrialStoppedEarly",
)


def _trial_row(trial: Mapping[str, Any]) -> Body:
    metric = trial.get("finalMetric") or {}
    step = metric.get("trainingStep")
    row: Body = {
        "trialId": trial.get("trialId"),
        "state": trial.get("state"),
        "objectiveValue": metric.get("objectiveValue"),
        "trainingStep": int(step) if step is not None else None,
        "startTime": trial.get("startTime"),
        "endTime": trial.get("endTime"),
        "isTrialStoppedEarly": bool(trial.get("isTrialStoppedEarly", False)),
    }
    row.update(trial.get("hyperparameters") or {})
    return row


def _trial_columns(trials: Sequence[Mapping[str, Any]]) -> list[str]:
    params: dict[str, None] = {}
    for trial in trials:
        params.update(dict.fromkeys(trial.get("hyperparameters") or {}))
    return [*_TRIAL_FIELDS, *(p for p in params if p not in _TRIAL_FIELDS)]


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _resource_body(name_or_body: str | Mapping[str, Any], fields: Mapping[str, Any]) -> Body:
    """``{"name": id}`` (or a copy of a body) plus ``fields`` with camelCased keys."""
    body: Body = {"name": name_or_body} if isinstance(name_or_body, str) else dict(name_or_body)
    body.update({_camel(k): v for k, v in fields.items()})
    return body


def _mask(update_mask: str | Iterable[str]) -> str:
    return update_mask if isinstance(update_mask, str) else ",".join(update_mask)


def _json_body(response: httpx.Response) -> Body:
    if not response.content:
        return {}
    data = response.json()
    return data if isinstance(data, dict) else {"value": data}


def error_from_response(response: httpx.Response) -> MlEngineError:
    """Rebuild the error of a non-2xx answer from its Google error envelope."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):  # the flat {"error": "..."} of model-execution errors
        return error_for_code(Code.INVALID_ARGUMENT, error)
    if not isinstance(error, dict):
        text = response.text.strip()[:500] or response.reason_phrase
        code = _CODE_BY_HTTP.get(response.status_code, Code.UNKNOWN)
        return error_for_code(code, f"HTTP {response.status_code} from the server: {text}")
    status = str(error.get("status"))
    code = (
        Code(status)
        if status in Code.__members__
        else _CODE_BY_HTTP.get(response.status_code, Code.UNKNOWN)
    )
    message = str(error.get("message") or response.reason_phrase)
    return error_for_code(code, message, _field_of(error.get("details")))


def error_from_status(status: Mapping[str, Any], *, subject: str | None = None) -> MlEngineError:
    """Rebuild the error of a google.rpc.Status found in ``Operation.error``."""
    raw = status.get("status") or status.get("code")
    if isinstance(raw, str) and raw in Code.__members__:
        code = Code(raw)
    elif isinstance(raw, int):
        code = _CODE_BY_RPC_NUMBER.get(raw, Code.UNKNOWN)
    else:
        code = Code.UNKNOWN
    message = str(status.get("message") or code.value)
    if subject:
        message = f"Operation {subject} failed: {message}"
    return error_for_code(code, message, _field_of(status.get("details")))


def _field_of(details: object) -> str | None:
    """The first ``fieldViolations[].field`` of a BadRequest detail, if any."""
    if not isinstance(details, list):
        return None
    for detail in details:
        violations = detail.get("fieldViolations") if isinstance(detail, dict) else None
        for violation in violations or []:
            if isinstance(violation, dict) and violation.get("field"):
                return str(violation["field"])
    return None
