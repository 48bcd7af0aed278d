"""The one containment check: contain, contain_uri, validate_user_local_path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlengine.artifacts.paths import (
    checked_relative_path,
    contain,
    contain_uri,
    validate_user_local_path,
)
from mlengine.domain.errors import InvalidArgument, PermissionDenied

# Every way of writing "go up" or "start elsewhere" that a path must never get away with.
TRAVERSALS = [
    "..",
    "../x",
    "a/..",
    "a/../../x",
    "foo/../../x",
    "foo/../bar",
    "./x",
    "a/./b",
    "a//b",
    "/etc/passwd",
    "//server/share",
    "C:\\x",
    "C:x",
    "c:/windows",
    "..\\x",
    "a\\..\\..\\x",
    "x\x00.txt",
    "\x00",
    "a/\n/b",
    "%2e%2e",
    "%2E%2E/x",
    "%2e%2e%2fx",
    "..%2fx",
    "..%2f..%2fetc",
    "%2e%2e%5cx",
    "%252e%252e/",
    "%252e%252e%252fx",
    "%25252e%25252e",
    "a/%2e/b",
    "a%2f%2fb",
    "%2fetc%2fpasswd",
    "%5c%5cserver",
    "%00",
    "%2500",
    "．．/x",  # full-width dots: harmless on POSIX, refused anyway (NFKC reads them as '..')
    "a/．．/．．/x",
    "%EF%BC%8E%EF%BC%8E/x",  # the same, percent-encoded
    "file:///etc/passwd",
    "s3://bucket/x",
]

# Drive letters and schemes only mean something at the start of a path.
ANYWHERE = [t for t in TRAVERSALS if "://" not in t and not re.match(r"[A-Za-z]:[^\\]", t)]

SAFE = ["", "a", "a/b/c.txt", "models/m1/", "v1.0/model.pkl", "100%25", "..a", "a..", "...", "é/ü"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("value", TRAVERSALS)
def test_traversal_variants_are_rejected_by_contain(root: Path, value: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        contain(root, value, field="artifactPath")
    assert raised.value.field == "artifactPath"
    assert raised.value.message.startswith(f"artifactPath {value!r} is not allowed: ")


@pytest.mark.parametrize("value", TRAVERSALS)
def test_traversal_variants_are_rejected_by_contain_uri(value: str) -> None:
    with pytest.raises(InvalidArgument):
        contain_uri("memory://bucket/prefix", value, field="path")


@pytest.mark.parametrize("value", SAFE)
def test_safe_paths_stay_under_the_root(root: Path, value: str) -> None:
    resolved = contain(root, value, field="path")
    assert resolved == (root.resolve() / value.rstrip("/") if value else root.resolve())


def test_value_is_used_verbatim_not_decoded(root: Path) -> None:
    assert contain(root, "100%25", field="path").name == "100%25"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("x\x00y", "NUL or other control characters"),
        ("a\\b", "backslashes are not path separators"),
        ("/abs", "must be relative, not an absolute path"),
        ("C:x", "without a drive letter"),
        ("a/../b", "'..' segments are not allowed"),
        ("a//b", "empty and '.' path segments"),
        ("%252e%252e", "'..' segments are not allowed (read as '..')"),
        ("s3://b/k", "not a URI"),
        ("a" * 256, "longer than 255 bytes"),
        ("%ff", "do not decode to UTF-8"),
    ],
)
def test_messages_name_field_value_and_rule(root: Path, value: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        contain(root, value, field="trainingInput.jobDir")
    assert raised.value.message.startswith(f"trainingInput.jobDir {value!r}"[:200])
    assert rule in raised.value.message


def test_control_characters_are_shown_escaped(root: Path) -> None:
    with pytest.raises(InvalidArgument) as raised:
        contain(root, "a\x00b", field="path")
    assert "'a\\x00b'" in raised.value.message
    assert "\x00" not in raised.value.message


def test_non_string_is_rejected(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        contain(root, 5, field="path")  # type: ignore[arg-type]


def test_endless_encoding_is_rejected(root: Path) -> None:
    value = "%2e"
    for _ in range(12):
        value = value.replace("%", "%25")
    with pytest.raises(InvalidArgument, match="percent-encoded too many times"):
        contain(root, value, field="path")


def test_symlinked_folder_pointing_out_is_rejected(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="outside the artifact root through a symlink"):
        contain(root, "escape/secret", field="path")
    with pytest.raises(InvalidArgument):
        contain(root, "escape", field="path")


def test_symlink_inside_the_root_is_followed(root: Path) -> None:
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real")
    assert contain(root, "alias/x", field="path") == root.resolve() / "real" / "x"


def test_root_behind_a_symlink_still_contains(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "root-link"
    link.symlink_to(root)
    assert contain(link, "a/b", field="path") == root.resolve() / "a" / "b"


def test_contain_uri_joins_remote_roots() -> None:
    assert contain_uri("s3://bucket/pre/", "a/b", field="p") == "s3://bucket/pre/a/b"
    assert contain_uri("memory://x", "", field="p") == "memory://x"


def test_contain_uri_checks_symlinks_for_file_roots(root: Path, tmp_path: Path) -> None:
    (root / "out").symlink_to(tmp_path)
    assert contain_uri(f"file://{root}", "a", field="p") == f"file://{root.resolve()}/a"
    assert contain_uri(str(root), "a", field="p") == str(root.resolve() / "a")
    with pytest.raises(InvalidArgument):
        contain_uri(f"file://{root}", "out/x", field="p")


# --- properties ------------------------------------------------------------------------

_SEGMENT_ALPHABET = st.sampled_from(
    ["a", "b", ".", "..", "%", "2e", "2E", "25", "2f", "5c", "/", "\\", "\x00", "．", ":", "C", "é"]
)
_paths = st.lists(_SEGMENT_ALPHABET, max_size=12).map("".join)


@pytest.fixture
def root_with_links(root: Path, tmp_path: Path) -> Path:
    """A root where ``a`` leads out (a symlinked folder) and ``b`` is a link inside."""
    (tmp_path / "outside").mkdir()
    (root / "a").symlink_to(tmp_path / "outside")
    (root / "real").mkdir()
    (root / "b").symlink_to(root / "real")
    return root


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_paths)
def test_nothing_contain_returns_is_outside_the_root(root_with_links: Path, value: str) -> None:
    root = root_with_links
    try:
        resolved = contain(root, value, field="path")
    except InvalidArgument:
        return
    base = root.resolve()
    assert resolved == base or resolved.is_relative_to(base)
    assert ".." not in resolved.relative_to(base).parts


@settings(max_examples=200)
@given(
    prefix=st.lists(st.sampled_from(["a", "b1", "c.d"]), max_size=3),
    attack=st.sampled_from(ANYWHERE),
    suffix=st.lists(st.sampled_from(["x", "y.txt"]), max_size=2),
)
def test_traversal_anywhere_in_a_path_is_rejected(
    prefix: list[str], attack: str, suffix: list[str]
) -> None:
    value = "/".join([*prefix, attack, *suffix])
    with pytest.raises(InvalidArgument):
        checked_relative_path(value, field="path")


@settings(max_examples=200)
@given(value=st.text(max_size=40))
def test_accepted_paths_survive_every_decoding(value: str) -> None:
    from urllib.parse import unquote

    try:
        relative = checked_relative_path(value, field="path")
    except InvalidArgument:
        return
    decoded = relative
    for _ in range(4):
        decoded = unquote(decoded)
        assert not decoded.startswith("/")
        assert ".." not in decoded.split("/")
        assert "\\" not in decoded and "\x00" not in decoded


# --- user paths on the server's disk ------------------------------------------------------


def test_user_local_path_is_resolved_and_checked(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "m.pkl").write_bytes(b"x")
    assert (
        validate_user_local_path(tmp_path / "model", field="deploymentUri")
        == (tmp_path / "model").resolve()
    )
    assert (
        validate_user_local_path(f"file://{tmp_path}/model/m.pkl", field="f", kind="file")
        == (tmp_path / "model" / "m.pkl").resolve()
    )


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("relative/dir", "must be an absolute path"),
        ("", "non-empty path"),
        ("/tmp/x\x00y", "control characters"),
        ("/tmp/../etc", "'..' segments"),
        ("/definitely/not/here", "does not exist"),
    ],
)
def test_user_local_path_rules(value: str, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rule) as raised:
        validate_user_local_path(value, field="deploymentUri")
    assert raised.value.field == "deploymentUri"


def test_user_local_path_kind_is_checked(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidArgument, match="must be a directory"):
        validate_user_local_path(tmp_path / "f", field="jobDir")
    with pytest.raises(InvalidArgument, match="must be a regular file"):
        validate_user_local_path(tmp_path, field="p", kind="file")
    missing = tmp_path / "later"
    assert validate_user_local_path(missing, field="jobDir", must_exist=False) == missing


def test_user_local_path_allow_list(tmp_path: Path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "escape").symlink_to(other)
    assert validate_user_local_path(allowed, field="p", allowed_roots=[allowed]) == allowed
    for value in (other, allowed / "escape"):
        with pytest.raises(PermissionDenied, match="outside the folders this server may read"):
            validate_user_local_path(value, field="p", allowed_roots=[allowed])
    with pytest.raises(PermissionDenied, match="none configured"):
        validate_user_local_path(allowed, field="p", allowed_roots=[])
