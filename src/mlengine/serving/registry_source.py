"""The data plane's read-only view of the model registry (a :class:`VersionSource`).

Resolves ``(project, model, version or None)`` through the metadata store: the model's
default version when none is named, and only READY versions. The version's files are the
immutable copy the deployer made in the artifact store (``VersionRuntime.artifact``); on an
fsspec artifact root they are downloaded once into a local cache. The revision that keys
loaded predictors is the copy's content digest, so a re-deployed version is loaded afresh.
When the deployer compiled the version to ONNX (``compiled/<digest>/``), the data plane is
told where (``extra["compiled_dir"]``) and serves that instead (``serving/compiled/``).

A custom prediction routine (``predictionClass``) and pickles that need user code get the
version's packages as ``package_paths``: local files of the copies the deployer published
with the version (``VersionRuntime.packages``), so a data plane on another machine sharing
the artifact store finds them too.  The revision then also covers the class and the
packages, so a version re-created with other code is loaded afresh.
"""

from __future__ import annotations

import hashlib

from mlengine.artifacts.store import ArtifactStore
from mlengine.domain.errors import FailedPrecondition
from mlengine.domain.resources import VersionState
from mlengine.serving.check_version import compiled_prefix
from mlengine.serving.versions import DeployedVersion
from mlengine.stores.base import MetadataStore

#: The file the ``serving/compiled/`` package writes (kept in step with it; imported lazily there).
COMPILED_FILE = "model.onnx"


class StoreVersionSource:
    """Resolves predict targets from ``store`` and ``artifacts`` (never writes to them).

    ``allow_pickle`` = False makes every version refuse pickle-based formats when loaded
    (the server's ``MLENGINE_REFUSE_PICKLE`` setting).
    """

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, *, allow_pickle: bool = True
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._allow_pickle = allow_pickle

    def resolve(self, project: str, model: str, version: str | None) -> DeployedVersion:
        stored_model = self._store.get_model(project, model)  # NotFound names the model
        if version is None:
            version = stored_model.default_version
            if version is None:
                raise FailedPrecondition(
                    f"Model {model} has no default version yet: create a version (the first "
                    "one that becomes READY is the default), or name one in the URL "
                    f"(…/models/{model}/versions/<version>:predict).",
                    field="name",
                )
        stored = self._store.get_version(project, model, version)
        if stored.state is not VersionState.READY:
            state = stored.state.value
            raise FailedPrecondition(
                f"Version {version} of model {model} is {state}, not READY, so it cannot "
                "predict yet"
                + (f": {stored.version.error_message}" if stored.version.error_message else "."),
                field="name",
            )
        runtime = stored.runtime
        if not runtime.artifact:
            raise FailedPrecondition(
                f"Version {version} of model {model} has no deployed files; create it again.",
                field="name",
            )
        model_dir = self._artifacts.local_path(runtime.artifact, field="deploymentUri")
        extra: dict[str, str] = {}
        compiled = compiled_prefix(model_dir)
        if self._allow_pickle and self._artifacts.exists(f"{compiled}/{COMPILED_FILE}"):
            extra["compiled_dir"] = str(self._artifacts.local_path(compiled))
        prediction_class = stored.version.prediction_class or None
        package_paths = tuple(
            self._artifacts.local_path(rel, field="packageUris") for rel in runtime.packages
        )
        revision = runtime.sha256 or runtime.artifact
        if prediction_class or runtime.packages:
            code = "\0".join([revision, prediction_class or "", *runtime.packages])
            revision = hashlib.sha256(code.encode()).hexdigest()
        return DeployedVersion(
            name=str(stored.version.name),
            model_dir=model_dir,
            framework=runtime.framework,
            prediction_class=prediction_class,
            package_paths=package_paths,
            revision=revision,
            allow_pickle=self._allow_pickle,
            extra=extra,
        )
