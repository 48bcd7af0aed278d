"""The ArtifactStore contract, run against a local folder, a file:// root and memory://."""

from __future__ import annotations

import errno
import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pytest

from mlengine.artifacts.store import TMP_PREFIX, ArtifactStore
from mlengine.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

BAD_PATHS = ["../x", "a/../../x", "%2e%2e/x", "%252e%252e/x", "/etc/passwd", "a\\..\\x", "a\x00b"]


@pytest.fixture(params=["local", "file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"))
    elif request.param == "file":
        yield ArtifactStore(f"file://{tmp_path / 'artifacts'}", cache_dir=tmp_path / "cache")
    else:
        root = f"memory://mlengine-test-{uuid.uuid4().hex}/artifacts"
        yield ArtifactStore(root, cache_dir=tmp_path / "cache")
        memory = fsspec.filesystem("memory")
        bucket = root.removeprefix("memory://").split("/")[0]
        if memory.exists(bucket):
            memory.rm(bucket, recursive=True)


def _all_names(store: ArtifactStore) -> list[str]:
    """Every file and folder name under the root, temporary ones included."""
    if store.is_local:
        return [p.name for p in Path(store.root).rglob("*")]
    fs = fsspec.filesystem("memory")
    base = store.root.removeprefix("memory://")
    return [p.rsplit("/", 1)[-1] for p in fs.find(base, withdirs=True)]


class FailingReader(io.RawIOBase):
    """A source that hands out some bytes, then fails like a full disk or a dropped upload."""

    def __init__(self, good: bytes, error: BaseException) -> None:
        self._good, self._error = good, error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._good:
            raise self._error
        size = min(len(buffer), len(self._good))
        buffer[:size] = self._good[:size]
        self._good = self._good[size:]
        return size


# --- contract ----------------------------------------------------------------------------


def test_put_and_get_bytes(store: ArtifactStore) -> None:
    uri = store.put_bytes("packages/abc/trainer.tar.gz", b"payload")
    assert uri == store.uri("packages/abc/trainer.tar.gz")
    assert store.get_bytes("packages/abc/trainer.tar.gz") == b"payload"
    assert store.exists("packages/abc/trainer.tar.gz")
    assert store.exists("packages/abc")
    assert not store.exists("packages/other")


def test_put_replaces_existing_content(store: ArtifactStore) -> None:
    store.put_bytes("a.txt", b"one")
    store.put_bytes("a.txt", b"two")
    assert store.get_bytes("a.txt") == b"two"
    assert store.list() == ["a.txt"]


def test_put_file_and_stream(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    store.put_file("f/in.bin", source)
    store.put_stream("f/s.bin", io.BytesIO(b"stream"))
    assert store.get_bytes("f/in.bin") == source.read_bytes()
    with store.open("f/s.bin") as handle:
        assert handle.read() == b"stream"


def test_open_only_reads(store: ArtifactStore) -> None:
    store.put_bytes("a", b"x")
    with pytest.raises(ValueError, match="only reads"):
        store.open("a", "wb")


def test_missing_artifacts_are_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFound, match="'nope/x' does not exist") as raised:
        store.get_bytes("nope/x", field="artifactPath")
    assert raised.value.field == "artifactPath"
    with pytest.raises(NotFound):
        store.open("nope")
    with pytest.raises(NotFound):
        store.local_path("nope")


def test_list_children_and_recursive(store: ArtifactStore) -> None:
    store.put_bytes("m/v1/model.pkl", b"1")
    store.put_bytes("m/v1/assets/vocab.txt", b"2")
    store.put_bytes("m/README", b"3")
    assert store.list("m") == ["README", "v1/"]
    assert store.list("m/") == ["README", "v1/"]
    assert store.list("m/v1", recursive=True) == ["assets/vocab.txt", "model.pkl"]
    assert store.list("") == ["m/"]
    assert store.list("absent") == []
    assert store.list("m/README") == []


def test_put_tree_copies_and_replaces(store: ArtifactStore, tmp_path: Path) -> None:
    first = tmp_path / "first"
    (first / "variables").mkdir(parents=True)
    (first / "saved_model.pb").write_bytes(b"pb")
    (first / "variables" / "v.data").write_bytes(b"v")
    uri = store.put_tree("models/m/v1", first)
    assert uri == store.uri("models/m/v1")
    assert store.list("models/m/v1", recursive=True) == ["saved_model.pb", "variables/v.data"]
    second = tmp_path / "second"
    second.mkdir()
    (second / "model.joblib").write_bytes(b"j")
    store.put_tree("models/m/v1", second)
    assert store.list("models/m/v1", recursive=True) == ["model.joblib"]
    assert not any(n.startswith(TMP_PREFIX) for n in _all_names(store))


def test_put_tree_refuses_links_leading_out(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (tmp_path / "secret").write_text("s")
    (source / "ok.txt").write_text("ok")
    (source / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        store.put_tree("models/m", source)
    assert not store.exists("models/m")
    assert not any(n.startswith(TMP_PREFIX) for n in _all_names(store))


def test_put_tree_follows_links_inside_the_source(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "real.txt").write_text("r")
    (source / "alias.txt").symlink_to(source / "real.txt")
    store.put_tree("m", source)
    assert store.get_bytes("m/alias.txt") == b"r"


def test_put_tree_needs_a_folder(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not a folder"):
        store.put_tree("m", tmp_path / "missing")


def test_delete_and_delete_tree(store: ArtifactStore) -> None:
    store.put_bytes("j/1/log.txt", b"l")
    store.put_bytes("j/1/out/metrics.json", b"{}")
    assert store.delete("j/1/log.txt") is True
    assert store.delete("j/1/log.txt") is False
    with pytest.raises(FailedPrecondition, match="delete_tree"):
        store.delete("j/1/out")
    assert store.delete_tree("j/1") is True
    assert store.delete_tree("j/1") is False
    assert not store.exists("j/1/out/metrics.json")


@pytest.mark.parametrize("method", ["delete", "delete_tree", "put_bytes"])
def test_the_root_itself_is_never_deleted_or_overwritten(store: ArtifactStore, method: str) -> None:
    store.put_bytes("keep", b"k")
    with pytest.raises(InvalidArgument, match="artifact root itself"):
        if method == "put_bytes":
            store.put_bytes("", b"x")
        else:
            getattr(store, method)("")
    assert store.get_bytes("keep") == b"k"


def test_writing_a_file_over_a_folder_fails_cleanly(store: ArtifactStore) -> None:
    store.put_bytes("d/x", b"x")
    with pytest.raises(FailedPrecondition):
        store.put_bytes("d", b"y")
    assert store.get_bytes("d/x") == b"x"


def test_local_path(store: ArtifactStore) -> None:
    store.put_bytes("m/v/model.pkl", b"model")
    store.put_bytes("m/v/extra/a.txt", b"a")
    path = store.local_path("m/v/model.pkl")
    assert path.read_bytes() == b"model"
    folder = store.local_path("m/v")
    assert (folder / "model.pkl").read_bytes() == b"model"
    assert (folder / "extra" / "a.txt").read_bytes() == b"a"
    assert store.local_path("m/v/model.pkl") == path  # cached or in place: stable


def test_local_path_follows_remote_changes(store: ArtifactStore) -> None:
    store.put_bytes("a.bin", b"first")
    assert store.local_path("a.bin").read_bytes() == b"first"
    store.put_bytes("a.bin", b"second, longer")
    assert store.local_path("a.bin").read_bytes() == b"second, longer"


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_traversal_is_rejected_by_every_method(
    store: ArtifactStore, bad: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "f").write_bytes(b"f")
    calls: list[Callable[[], object]] = [
        lambda: store.put_bytes(bad, b"x"),
        lambda: store.put_stream(bad, io.BytesIO(b"x")),
        lambda: store.put_file(bad, source / "f"),
        lambda: store.put_tree(bad, source),
        lambda: store.get_bytes(bad),
        lambda: store.open(bad),
        lambda: store.exists(bad),
        lambda: store.list(bad),
        lambda: store.delete(bad),
        lambda: store.delete_tree(bad),
        lambda: store.uri(bad),
        lambda: store.local_path(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as raised:
            call()
        assert raised.value.field == "path"
    assert _all_names(store) == []


# --- atomicity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), FailedPrecondition),
        (OSError(errno.EIO, "Input/output error"), Unavailable),
    ],
)
def test_failed_write_leaves_nothing_behind(
    store: ArtifactStore, error: OSError, expected: type[Exception]
) -> None:
    source = io.BufferedReader(FailingReader(b"half of it" * 100_000, error))
    with pytest.raises(expected, match=error.strerror or "") as raised:
        store.put_stream("packages/x/trainer.tar.gz", source, field="packageUris")
    assert "packages/x/trainer.tar.gz" in str(raised.value)
    assert raised.value.field == "packageUris"  # type: ignore[attr-defined]
    assert not store.exists("packages/x/trainer.tar.gz")
    assert not any(n.startswith(TMP_PREFIX) for n in _all_names(store))


def test_failed_overwrite_keeps_the_old_content(store: ArtifactStore) -> None:
    store.put_bytes("a.txt", b"old")
    source = io.BufferedReader(FailingReader(b"new" * 10, OSError(errno.ENOSPC, "full")))
    with pytest.raises(FailedPrecondition):
        store.put_stream("a.txt", source)
    assert store.get_bytes("a.txt") == b"old"
    assert store.list() == ["a.txt"]


def test_non_os_errors_from_the_source_propagate_and_clean_up(store: ArtifactStore) -> None:
    source = io.BufferedReader(FailingReader(b"x" * 10, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.put_stream("a.txt", source)
    assert _all_names(store) == []


def test_half_written_file_is_never_visible_under_its_name(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    seen: list[bool] = []

    class Peeking(io.RawIOBase):
        chunks = [b"a" * 10, b"b" * 10]

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            seen.append(store.exists("out.bin"))
            if not self.chunks:
                return 0
            chunk = self.chunks.pop(0)
            buffer[: len(chunk)] = chunk
            return len(chunk)

    store.put_stream("out.bin", Peeking())  # type: ignore[arg-type]
    assert seen and not any(seen)
    assert store.get_bytes("out.bin") == b"a" * 10 + b"b" * 10


def test_local_tree_failure_leaves_no_partial_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    source = tmp_path / "model"
    source.mkdir()
    for i in range(3):
        (source / f"f{i}").write_bytes(b"x")
    import shutil

    real_copy = shutil.copyfile
    calls = {"n": 0}

    def flaky_copy(src: str, dst: str, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst)

    monkeypatch.setattr("mlengine.artifacts.store.shutil.copyfile", flaky_copy)
    with pytest.raises(FailedPrecondition, match="No space left on device"):
        store.put_tree("models/m/v1", source)
    assert not store.exists("models/m/v1")
    assert not any(n.startswith(TMP_PREFIX) for n in _all_names(store))


# --- local specifics ---------------------------------------------------------------------------


def test_local_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "root"
    store = ArtifactStore(root)
    assert root.is_dir() and store.is_local
    assert store.uri("a/b") == str(root.resolve() / "a" / "b")


def test_local_writes_through_an_escaping_symlink_are_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root" / "jobs").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="symlink"):
        store.put_bytes("jobs/j1/log.txt", b"x")
    assert list(outside.iterdir()) == []


def test_remote_uri_keeps_the_configured_root() -> None:
    root = f"memory://mlengine-test-{uuid.uuid4().hex}"
    store = ArtifactStore(root + "/")
    assert not store.is_local
    assert store.uri("packages/a/b.whl") == f"{root}/packages/a/b.whl"
    assert repr(store) == f"ArtifactStore({root!r})"
