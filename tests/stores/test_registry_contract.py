"""The model-registry half of the MetadataStore contract, on SQLite and PostgreSQL.

Models and versions (``mlengine/stores/base.py``): identity, paging and filters, the default
version as one source of truth, atomic read-modify-writes, operations written in the same
transaction as the version they describe, and the rules that keep versions attached to models.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mlengine.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from mlengine.domain.registry_filter import (
    RegistryQuery,
    parse_model_filter,
    parse_version_filter,
)
from mlengine.domain.resources import Model, Version, VersionState
from mlengine.stores.base import StoredModel, StoredVersion, VersionRuntime
from mlengine.stores.sql import SqlMetadataStore
from tests.stores.conftest import OpenStore

ALL = RegistryQuery()
T0 = datetime(2024, 5, 1, 9, 30, 0, 250000, tzinfo=UTC)


def model(project: str, model_id: str, **fields: Any) -> Model:
    defaults: dict[str, Any] = {"labels": {"team": "tabular"}, "regions": ["local"]}
    return Model(
        name=f"projects/{project}/models/{model_id}",
        description="census income",
        **{**defaults, **fields},
    )


def version(
    project: str, model_id: str, version_id: str, state: VersionState = VersionState.CREATING
) -> Version:
    return Version(
        name=f"projects/{project}/models/{model_id}/versions/{version_id}",
        deployment_uri="/srv/models/census/1",
        state=state,
        create_time=T0,
        labels={"stage": "test"},
    )


def operation(project: str, op_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": f"projects/{project}/operations/{op_id}",
        "metadata": {"@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"},
        "done": False,
        **fields,
    }


def with_state(state: VersionState) -> Any:
    def change(m: StoredModel, v: StoredVersion) -> tuple[StoredModel, StoredVersion]:
        return m, replace(v, version=v.version.model_copy(update={"state": state}))

    return change


def make_default(m: StoredModel, v: StoredVersion) -> tuple[StoredModel, StoredVersion]:
    return replace(m, default_version=v.version_id), v


def model_ids(page: list[StoredModel]) -> list[str]:
    return [stored.model_id for stored in page]


def version_ids(page: list[StoredVersion]) -> list[str]:
    return [stored.version_id for stored in page]


class TestModels:
    def test_create_and_get_round_trip(self, store: SqlMetadataStore) -> None:
        created = store.create_model("proj", model("proj", "census"))
        assert created.model_id == "census" and created.seq > 0
        assert isinstance(created.model.etag, bytes) and created.model.etag
        assert created.default_version is None and created.default is None
        assert store.get_model("proj", "census") == created
        assert created.model.model_copy(update={"etag": None}) == model("proj", "census")

    def test_names_are_unique_per_project_and_free_again_after_delete(
        self, store: SqlMetadataStore
    ) -> None:
        first = store.create_model("proj", model("proj", "census"))
        store.create_model("other", model("other", "census"))
        with pytest.raises(AlreadyExists, match="projects/proj/models/census"):
            store.create_model("proj", model("proj", "census"))
        store.delete_model("proj", "census")
        with pytest.raises(NotFound, match="projects/proj/models/census"):
            store.get_model("proj", "census")
        again = store.create_model("proj", model("proj", "census"))
        assert again.seq > first.seq

    def test_list_is_newest_first_paged_and_scoped(self, store: SqlMetadataStore) -> None:
        for i in range(5):
            store.create_model("proj", model("proj", f"m{i}"))
        store.create_model("other", model("other", "x"))
        seen: list[str] = []
        token = None
        while True:
            page, token = store.list_models("proj", ALL, page_size=2, page_token=token)
            seen += model_ids(page)
            if token is None:
                break
        assert seen == ["m4", "m3", "m2", "m1", "m0"]
        assert store.list_models("nobody", ALL, page_size=5, page_token=None) == ([], None)
        page, token = store.list_models("proj", ALL, page_size=5, page_token=None)
        assert len(page) == 5 and token is None

    def test_filters_select_in_the_database(self, store: SqlMetadataStore) -> None:
        store.create_model("proj", model("proj", "census_a"))
        store.create_model("proj", model("proj", "census_b", labels={"team": "vision"}))
        store.create_model("proj", model("proj", "Census_c", labels={"owner": "bob"}))

        def selected(text: str) -> list[str]:
            query = parse_model_filter(text)
            return model_ids(store.list_models("proj", query, page_size=10, page_token=None)[0])

        assert selected("name:census*") == ["census_b", "census_a"]
        assert selected("name=census_a") == ["census_a"]
        assert selected("labels.team=vision") == ["census_b"]
        assert selected("labels:owner") == ["Census_c"]
        assert selected("name:census* AND labels.team=tabular") == ["census_a"]
        assert selected("name:c%*") == []

    def test_page_tokens_belong_to_their_list(self, store: SqlMetadataStore) -> None:
        for i in range(3):
            store.create_model("proj", model("proj", f"m{i}"))
        _, token = store.list_models("proj", ALL, page_size=1, page_token=None)
        assert token is not None
        with pytest.raises(InvalidArgument) as caught:
            store.list_models("other", ALL, page_size=1, page_token=token)
        assert caught.value.field == "pageToken"
        with pytest.raises(InvalidArgument):
            store.list_versions("proj", "m0", ALL, page_size=1, page_token=token)

    def test_update_is_atomic_and_sets_a_new_etag(self, store: SqlMetadataStore) -> None:
        created = store.create_model("proj", model("proj", "census"))

        def describe(current: StoredModel) -> StoredModel:
            return replace(current, model=current.model.model_copy(update={"description": "x"}))

        updated = store.update_model("proj", "census", describe)
        assert updated.model.description == "x" and updated.model.etag != created.model.etag
        assert store.get_model("proj", "census") == updated
        assert store.update_model("proj", "census", lambda m: m) == updated  # no change, no etag

        def refuse(current: StoredModel) -> StoredModel:
            raise FailedPrecondition("no")

        with pytest.raises(FailedPrecondition):
            store.update_model("proj", "census", refuse)
        with pytest.raises(Internal):
            store.update_model("proj", "census", lambda m: replace(m, seq=m.seq + 1))
        with pytest.raises(NotFound):
            store.update_model("proj", "nope", describe)
        assert store.get_model("proj", "census") == updated

    def test_the_default_must_name_an_existing_version(self, store: SqlMetadataStore) -> None:
        store.create_model("proj", model("proj", "census"))
        store.create_version("proj", "census", version("proj", "census", "v1"))
        with pytest.raises(NotFound, match="versions/v9"):
            store.update_model("proj", "census", lambda m: replace(m, default_version="v9"))
        chosen = store.update_model("proj", "census", lambda m: replace(m, default_version="v1"))
        assert chosen.default_version == "v1"
        assert chosen.default is not None and chosen.default.name.endswith("/versions/v1")

    def test_delete_refuses_while_versions_remain_and_names_them(
        self, store: SqlMetadataStore
    ) -> None:
        store.create_model("proj", model("proj", "census"))
        store.create_version("proj", "census", version("proj", "census", "v1"))
        store.create_version("proj", "census", version("proj", "census", "v2"))
        op = operation("proj", "delete_census")
        with pytest.raises(FailedPrecondition, match=r"v1, v2"):
            store.delete_model("proj", "census", operation=op)
        with pytest.raises(NotFound):
            store.get_operation(op["name"])  # rolled back with the delete
        store.delete_version("proj", "census", "v1")
        store.delete_version("proj", "census", "v2")
        store.delete_model("proj", "census", operation={**op, "done": True})
        assert store.get_operation(op["name"])["done"] is True
        with pytest.raises(NotFound):
            store.delete_model("proj", "census")


class TestVersions:
    def test_create_writes_the_version_and_its_operation_together(
        self, store: SqlMetadataStore
    ) -> None:
        store.create_model("proj", model("proj", "census"))
        op = operation("proj", "create_census_v1")
        runtime = VersionRuntime(operation=op["name"])
        created = store.create_version(
            "proj", "census", version("proj", "census", "v1"), runtime=runtime, operation=op
        )
        assert created.version_id == "v1" and created.runtime == runtime
        assert created.state is VersionState.CREATING and not created.is_default
        assert store.get_version("proj", "census", "v1") == created
        assert store.get_operation(op["name"]) == op
        second = operation("proj", "create_census_v1_again")
        with pytest.raises(AlreadyExists, match="versions/v1"):
            store.create_version(
                "proj", "census", version("proj", "census", "v1"), operation=second
            )
        with pytest.raises(NotFound):
            store.get_operation(second["name"])

    def test_a_version_needs_its_model(self, store: SqlMetadataStore) -> None:
        with pytest.raises(NotFound, match="projects/proj/models/nope"):
            store.create_version("proj", "nope", version("proj", "nope", "v1"))
        with pytest.raises(NotFound, match="models/nope"):
            store.list_versions("proj", "nope", ALL, page_size=5, page_token=None)
        store.create_model("proj", model("proj", "census"))
        with pytest.raises(NotFound, match="versions/v1"):
            store.get_version("proj", "census", "v1")

    def test_list_is_per_model_newest_first_and_filters_by_state(
        self, store: SqlMetadataStore
    ) -> None:
        store.create_model("proj", model("proj", "census"))
        store.create_model("proj", model("proj", "other"))
        for i, state in enumerate([VersionState.READY, VersionState.FAILED, VersionState.READY]):
            store.create_version("proj", "census", version("proj", "census", f"v{i}", state))
        store.create_version("proj", "other", version("proj", "other", "v9"))

        def listed(text: str = "", size: int = 10) -> list[str]:
            seen: list[str] = []
            token = None
            while True:
                page, token = store.list_versions(
                    "proj", "census", parse_version_filter(text), page_size=size, page_token=token
                )
                seen += version_ids(page)
                if token is None:
                    return seen

        assert listed(size=1) == ["v2", "v1", "v0"]
        assert listed("state=READY") == ["v2", "v0"]
        assert listed("state=ready AND name:v0") == ["v0"]
        assert listed("labels.stage=test", size=2) == ["v2", "v1", "v0"]
        assert listed("labels.stage=prod") == []

    def test_default_is_one_column_seen_from_both_sides(self, store: SqlMetadataStore) -> None:
        store.create_model("proj", model("proj", "census"))
        for name in ("v1", "v2"):
            store.create_version("proj", "census", version("proj", "census", name))
        before = store.get_version("proj", "census", "v1")

        chosen_model, chosen = store.update_version("proj", "census", "v1", make_default)

        assert chosen.is_default and chosen_model.default_version == "v1"
        assert chosen_model.default == chosen.version
        assert chosen.version.etag == before.version.etag  # the version itself did not change
        listed, _ = store.list_versions("proj", "census", ALL, page_size=5, page_token=None)
        assert {v.version_id: v.is_default for v in listed} == {"v1": True, "v2": False}
        _, switched = store.update_version("proj", "census", "v2", make_default)
        assert switched.is_default
        assert not store.get_version("proj", "census", "v1").is_default
        assert store.get_model("proj", "census").default_version == "v2"
        assert [
            m.default_version
            for m in store.list_models("proj", ALL, page_size=5, page_token=None)[0]
        ] == ["v2"]

    def test_update_version_may_only_point_the_default_at_itself(
        self, store: SqlMetadataStore
    ) -> None:
        store.create_model("proj", model("proj", "census"))
        for name in ("v1", "v2"):
            store.create_version("proj", "census", version("proj", "census", name))
        store.update_version("proj", "census", "v1", make_default)

        def steal(m: StoredModel, v: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            return replace(m, default_version=None), v

        with pytest.raises(Internal):
            store.update_version("proj", "census", "v2", steal)
        with pytest.raises(Internal):
            store.update_version(
                "proj", "census", "v2", lambda m, v: (m, replace(v, seq=v.seq + 1))
            )
        assert store.get_model("proj", "census").default_version == "v1"

    def test_update_persists_state_runtime_and_replaces_the_operation(
        self, store: SqlMetadataStore
    ) -> None:
        store.create_model("proj", model("proj", "census"))
        op = operation("proj", "create_census_v1")
        created = store.create_version(
            "proj", "census", version("proj", "census", "v1"), operation=op
        )
        packages = (
            "models/x/census/v1/packages/0f/a-1.0.tar.gz",
            "models/x/census/v1/packages/1e/b.whl",
        )
        runtime = VersionRuntime(op["name"], "models/x/census/v1/abc", "abc", "CUSTOM", packages)
        done = {**op, "done": True, "response": {"@type": "t"}}

        def ready(m: StoredModel, v: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            state = {"state": VersionState.READY}
            ready_version = replace(v, version=v.version.model_copy(update=state), runtime=runtime)
            return replace(m, default_version=v.version_id), ready_version

        _, updated = store.update_version("proj", "census", "v1", ready, operation=done)

        assert updated.state is VersionState.READY and updated.runtime == runtime
        assert updated.is_default and updated.version.etag != created.version.etag
        assert store.get_operation(op["name"]) == done
        assert store.get_version("proj", "census", "v1") == updated

    def test_an_operation_may_describe_what_was_written(self, store: SqlMetadataStore) -> None:
        store.create_model("proj", model("proj", "census"))
        store.create_version("proj", "census", version("proj", "census", "v1"))
        seen: list[tuple[StoredModel, StoredVersion]] = []

        def describe(m: StoredModel, v: StoredVersion) -> dict[str, Any]:
            seen.append((m, v))
            return operation("proj", "set_default", done=True, response={"isDefault": True})

        written = store.update_version("proj", "census", "v1", make_default, operation=describe)

        assert seen == [written] and written[1].is_default
        assert store.get_operation("projects/proj/operations/set_default")["done"] is True

    def test_a_failing_change_writes_nothing(self, store: SqlMetadataStore) -> None:
        store.create_model("proj", model("proj", "census"))
        store.create_version("proj", "census", version("proj", "census", "v1"))
        op = operation("proj", "delete_census_v1")

        def refuse(m: StoredModel, v: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            raise FailedPrecondition("busy")

        with pytest.raises(FailedPrecondition):
            store.update_version("proj", "census", "v1", refuse, operation=op)
        with pytest.raises(NotFound):
            store.get_operation(op["name"])
        with pytest.raises(NotFound):
            store.update_version("proj", "census", "nope", make_default)

    def test_deleting_the_default_clears_it(self, store: SqlMetadataStore) -> None:
        store.create_model("proj", model("proj", "census"))
        store.create_version("proj", "census", version("proj", "census", "v1"))
        store.update_version("proj", "census", "v1", make_default)
        op = operation("proj", "delete_census_v1", done=True)

        store.delete_version("proj", "census", "v1", operation=op)

        after = store.get_model("proj", "census")
        assert after.default_version is None and after.default is None
        assert store.get_operation(op["name"]) == op
        with pytest.raises(NotFound):
            store.delete_version("proj", "census", "v1")
        store.create_version("proj", "census", version("proj", "census", "v1"))  # free again

    def test_versions_in_states_and_counts_span_projects(self, store: SqlMetadataStore) -> None:
        assert store.count_models() == 0
        assert store.count_versions_by_state() == dict.fromkeys(VersionState, 0)
        for project in ("a", "b"):
            store.create_model(project, model(project, "m"))
            store.create_version(project, "m", version(project, "m", "v1"))
            store.create_version(project, "m", version(project, "m", "v2", VersionState.READY))
        store.update_version("b", "m", "v2", make_default)

        creating = store.versions_in_states([VersionState.CREATING])
        ready = store.versions_in_states([VersionState.READY])

        assert [(v.project, v.version_id) for v in creating] == [("a", "v1"), ("b", "v1")]
        assert [(v.project, v.is_default) for v in ready] == [("a", False), ("b", True)]
        assert store.versions_in_states([]) == []
        assert store.count_models() == 2
        counts = store.count_versions_by_state()
        assert counts[VersionState.CREATING] == 2 and counts[VersionState.READY] == 2
        assert sum(counts.values()) == 4

    def test_everything_survives_close_and_reopen(self, open_store: OpenStore) -> None:
        first = open_store()
        first.create_model("proj", model("proj", "census"))
        first.create_version("proj", "census", version("proj", "census", "v1"))
        stored_model, stored_version = first.update_version("proj", "census", "v1", make_default)
        first.close()
        again = open_store()
        assert again.get_model("proj", "census") == stored_model
        assert again.get_version("proj", "census", "v1") == stored_version


class TestConcurrency:
    def test_concurrent_default_switches_stay_consistent(self, open_store: OpenStore) -> None:
        stores = [open_store(), open_store()]
        stores[0].create_model("proj", model("proj", "census"))
        for name in ("v1", "v2", "v3"):
            stores[0].create_version("proj", "census", version("proj", "census", name))
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(15):
                    name = f"v{(worker + i) % 3 + 1}"
                    stores[worker % 2].update_version("proj", "census", name, make_default)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        listed, _ = stores[0].list_versions("proj", "census", ALL, page_size=5, page_token=None)
        defaults = [v.version_id for v in listed if v.is_default]
        assert defaults == [stores[0].get_model("proj", "census").default_version]

    def test_racing_creates_of_one_version_admit_exactly_one(self, open_store: OpenStore) -> None:
        stores = [open_store(), open_store()]
        stores[0].create_model("proj", model("proj", "census"))
        outcomes: list[str] = []

        def create(worker: int) -> None:
            try:
                stores[worker % 2].create_version(
                    "proj", "census", version("proj", "census", "same")
                )
                outcomes.append("created")
            except AlreadyExists:
                outcomes.append("exists")

        threads = [threading.Thread(target=create, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["created"] + ["exists"] * 5

    def test_a_model_delete_racing_a_version_create_never_orphans(
        self, open_store: OpenStore
    ) -> None:
        stores = [open_store(), open_store()]
        for round_ in range(5):
            name = f"m{round_}"
            stores[0].create_model("proj", model("proj", name))
            outcomes = _race(
                delete=lambda name=name: stores[0].delete_model("proj", name),
                create=lambda name=name: stores[1].create_version(
                    "proj", name, version("proj", name, "v1")
                ),
            )
            if outcomes["delete"] is None:
                assert isinstance(outcomes["create"], NotFound)
            else:
                assert isinstance(outcomes["delete"], FailedPrecondition)
                assert outcomes["create"] is None


def _race(**actions: Any) -> dict[str, BaseException | None]:
    """Run each action on its own thread at once; what each raised (None: nothing)."""
    outcomes: dict[str, BaseException | None] = {}

    def run(key: str) -> None:
        try:
            actions[key]()
            outcomes[key] = None
        except BaseException as error:
            outcomes[key] = error

    threads = [threading.Thread(target=run, args=(key,)) for key in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
