"""PackageService: staging uploads by content and materializing packageUris."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from mlengine.artifacts.store import TMP_PREFIX, ArtifactStore
from mlengine.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
)
from mlengine.services.packages import (
    PACKAGE_URI_SCHEME,
    PackageService,
    validate_package_filename,
)


def _tarball(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("trainer-0.1/setup.py")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def _zip(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/__init__.py", text)
    return buffer.getvalue()


ARCHIVE = _tarball(b"from setuptools import setup\nsetup(name='trainer')\n" * 20)
WHEEL = _zip(b"VALUE = 1\n")
SHA = hashlib.sha256(ARCHIVE).hexdigest()


@pytest.fixture
def memory_bucket() -> Iterator[str]:
    bucket = f"mlengine-test-{uuid.uuid4().hex}"
    yield bucket
    memory = fsspec.filesystem("memory")
    if memory.exists(bucket):
        memory.rm(bucket, recursive=True)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path, memory_bucket: str) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    return ArtifactStore(f"memory://{memory_bucket}/artifacts", cache_dir=tmp_path / "sc")


@pytest.fixture
def service(store: ArtifactStore, tmp_path: Path) -> PackageService:
    return PackageService(store, tmp_path / "package-cache")


# --- staging -----------------------------------------------------------------------------------


def test_stage_stores_by_content_hash(service: PackageService, store: ArtifactStore) -> None:
    uri = service.stage("trainer-0.1.tar.gz", ARCHIVE)
    assert uri == f"{PACKAGE_URI_SCHEME}packages/{SHA}/trainer-0.1.tar.gz"
    assert store.get_bytes(f"packages/{SHA}/trainer-0.1.tar.gz") == ARCHIVE


def test_stage_is_idempotent_and_does_not_rewrite(
    service: PackageService, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = service.stage("trainer.tar.gz", ARCHIVE)

    def no_writes(*args: object, **kwargs: object) -> None:
        raise AssertionError("staged bytes were written twice")

    monkeypatch.setattr(store, "put_bytes", no_writes)
    monkeypatch.setattr(store, "put_file", no_writes)
    assert service.stage("trainer.tar.gz", ARCHIVE) == first
    assert service.stage("trainer.tar.gz", io.BytesIO(ARCHIVE)) == first


def test_stage_accepts_streams(service: PackageService, store: ArtifactStore) -> None:
    uri = service.stage("pkg-1.0-py3-none-any.whl", io.BytesIO(WHEEL))
    assert uri.endswith(f"/{hashlib.sha256(WHEEL).hexdigest()}/pkg-1.0-py3-none-any.whl")
    assert store.get_bytes(uri.removeprefix(PACKAGE_URI_SCHEME)) == WHEEL
    assert not list((service._cache_dir).glob(f"{TMP_PREFIX}*"))


@pytest.mark.parametrize(
    "name",
    [
        "trainer.tar.gz",
        "trainer-0.0.0.tgz",
        "bundle.zip",
        "census_pytorch_trainer-0.1.0.tar.gz",
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.0-1build-py3-none-any.whl",
        "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ],
)
def test_valid_filenames(name: str) -> None:
    assert validate_package_filename(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../trainer.tar.gz", "plain file name"),
        ("dir/trainer.tar.gz", "plain file name"),
        ("a\\b.tar.gz", "plain file name"),
        ("%2e%2e.tar.gz", "plain file name"),
        (".hidden.tar.gz", "plain file name"),
        ("", "plain file name"),
        ("x\x00.zip", "plain file name"),
        ("a" * 300 + ".zip", "plain file name"),
        ("trainer.py", "must end in .tar.gz, .tgz, .zip, .whl"),
        ("trainer.tar", "must end in"),
        ("pkg.whl", "PEP 427"),
        ("pkg-1.0-py3-none.whl", "PEP 427"),
        ("pkg-1.0-x-py3-none-any.whl", "PEP 427"),
        ("pkg-1.0--py3-none-any.whl", "PEP 427"),
    ],
)
def test_bad_filenames_are_rejected(service: PackageService, name: str, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rule) as raised:
        service.stage(name, ARCHIVE)
    assert raised.value.field == "packageUris"


@pytest.mark.parametrize("as_stream", [False, True])
def test_size_limit(store: ArtifactStore, tmp_path: Path, as_stream: bool) -> None:
    service = PackageService(store, tmp_path / "cache", max_bytes=1024 * 1024)
    data = b"x" * (1024 * 1024 + 1)
    with pytest.raises(ResourceExhausted, match="larger than the 1 MB limit"):
        service.stage("big.tar.gz", io.BytesIO(data) if as_stream else data)
    assert store.list("packages") == []
    assert not list((tmp_path / "cache").glob("*"))


# --- materializing -------------------------------------------------------------------------------


def test_materialize_staged_package(service: PackageService) -> None:
    uri = service.stage("trainer.tar.gz", ARCHIVE)
    (path,) = service.materialize([uri])
    assert path.name == "trainer.tar.gz"
    assert path.read_bytes() == ARCHIVE
    assert service.materialize([uri]) == [path]


def test_corrupted_staged_blob_is_an_error(service: PackageService, store: ArtifactStore) -> None:
    uri = service.stage("trainer.tar.gz", ARCHIVE)
    store.put_bytes(f"packages/{SHA}/trainer.tar.gz", b"bit rot")
    with pytest.raises(FailedPrecondition, match="is corrupted") as raised:
        service.materialize([uri])
    assert raised.value.field == "trainingInput.packageUris[0]"


def test_missing_staged_package(service: PackageService) -> None:
    uri = f"{PACKAGE_URI_SCHEME}packages/{'0' * 64}/trainer.tar.gz"
    with pytest.raises(InvalidArgument, match="does not exist on this server"):
        service.materialize([uri])
    with pytest.raises(InvalidArgument, match="does not exist on this server"):
        service.check([uri])


@pytest.mark.parametrize(
    "uri",
    [
        f"{PACKAGE_URI_SCHEME}packages/../../etc/passwd",
        f"{PACKAGE_URI_SCHEME}packages/{SHA}/../../../x.tar.gz",
        f"{PACKAGE_URI_SCHEME}packages/%2e%2e/%2e%2e/x.tar.gz",
        f"{PACKAGE_URI_SCHEME}models/m/model.tar.gz",
        f"{PACKAGE_URI_SCHEME}packages/abc/x.tar.gz",
        f"{PACKAGE_URI_SCHEME}packages/{SHA}/sub/x.tar.gz",
        f"{PACKAGE_URI_SCHEME}packages/{SHA}/x.py",
        f"{PACKAGE_URI_SCHEME}/etc/passwd",
        "relative/trainer.tar.gz",
        "http://example.com/trainer.tar.gz",
        "ftp://example.com/trainer.tar.gz",
        "",
    ],
)
def test_bad_uris_name_their_index(service: PackageService, uri: str) -> None:
    good = service.stage("trainer.tar.gz", ARCHIVE)
    for call in (service.materialize, service.check):
        with pytest.raises(InvalidArgument) as raised:
            call([good, uri])
        assert raised.value.field == "trainingInput.packageUris[1]"


def test_errors_name_the_callers_field(service: PackageService, tmp_path: Path) -> None:
    """versions.create passes ``packageUris``; jobs keep ``trainingInput.packageUris``."""
    good = service.stage("trainer.tar.gz", ARCHIVE)
    missing = str(tmp_path / "missing.tar.gz")
    for call in (service.materialize, service.check):
        with pytest.raises(InvalidArgument) as raised:
            call([good, missing], field="packageUris")
        assert raised.value.field == "packageUris[1]"
        assert raised.value.message.startswith("packageUris[1] ")


def test_local_server_paths(service: PackageService, tmp_path: Path) -> None:
    archive = tmp_path / "local" / "extra-1.0.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(ARCHIVE)
    assert service.materialize([str(archive)]) == [archive.resolve()]
    assert service.materialize([f"file://{archive}"]) == [archive.resolve()]
    service.check([str(archive)])
    with pytest.raises(InvalidArgument, match="does not exist"):
        service.materialize([str(tmp_path / "missing.tar.gz")])
    with pytest.raises(InvalidArgument, match=r"'\.\.' segments"):
        service.materialize([f"{tmp_path}/local/../local/extra-1.0.tar.gz"])
    (tmp_path / "local" / "notes.txt").write_text("x")
    with pytest.raises(InvalidArgument, match="must end in"):
        service.materialize([str(tmp_path / "local" / "notes.txt")])


def test_local_paths_respect_the_allow_list(store: ArtifactStore, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ok.tar.gz").write_bytes(ARCHIVE)
    (tmp_path / "other.tar.gz").write_bytes(ARCHIVE)
    service = PackageService(store, tmp_path / "cache", allowed_local_roots=[allowed])
    assert service.materialize([str(allowed / "ok.tar.gz")]) == [allowed / "ok.tar.gz"]
    with pytest.raises(PermissionDenied) as raised:
        service.materialize([str(allowed / "ok.tar.gz"), str(tmp_path / "other.tar.gz")])
    assert raised.value.field == "trainingInput.packageUris[1]"


def test_remote_uris_are_downloaded_by_content(
    service: PackageService, memory_bucket: str, tmp_path: Path
) -> None:
    uri = f"memory://{memory_bucket}/staging/extra-2.0.zip"
    fsspec.filesystem("memory").pipe(uri.removeprefix("memory://"), ARCHIVE)
    service.check([uri])
    (path,) = service.materialize([uri])
    assert path == tmp_path / "package-cache" / SHA / "extra-2.0.zip"
    assert path.read_bytes() == ARCHIVE
    assert service.materialize([uri]) == [path]
    with pytest.raises(InvalidArgument, match="does not exist"):
        service.materialize([f"memory://{memory_bucket}/staging/missing.zip"])
    with pytest.raises(InvalidArgument, match="must end in"):
        service.check([f"memory://{memory_bucket}/staging/"])


def test_order_is_kept(service: PackageService, tmp_path: Path) -> None:
    first = service.stage("a.tar.gz", _tarball(b"a"))
    local = tmp_path / "b.zip"
    local.write_bytes(b"b")
    second = service.stage("c-1.0-py3-none-any.whl", _zip(b"c"))
    paths = service.materialize([first, str(local), second])
    assert [p.read_bytes() for p in paths] == [_tarball(b"a"), b"b", _zip(b"c")]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("trainer.tar.gz", b"not an archive"),
        ("trainer.tgz", WHEEL),
        ("pkg-1.0-py3-none-any.whl", ARCHIVE),
        ("pkg.zip", b"PK but not really"),
    ],
)
def test_bytes_that_are_not_the_named_archive_are_refused(
    service: PackageService, name: str, data: bytes
) -> None:
    with pytest.raises(InvalidArgument, match="not a valid") as err:
        service.stage(name, data)
    assert err.value.field == "packageUris"
    with pytest.raises(InvalidArgument):
        service.stage(name, io.BytesIO(data))
