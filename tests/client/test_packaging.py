"""--package-path → sdist, built and installed for real (offline, no build isolation)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mlengine.client.packaging import FIXED_MTIME, build_package
from mlengine.domain.errors import FailedPrecondition, InvalidArgument

REPO = Path(__file__).resolve().parents[2]
CENSUS_TRAINER = REPO / "examples" / "census" / "pytorch" / "trainer"


def _install_and_import(archive: Path, tmp_path: Path, probe: str) -> dict[str, object]:
    """pip-install ``archive`` into a fresh folder and run ``probe`` with only it importable."""
    target = tmp_path / f"site-{archive.stem}"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-index", "--no-deps", "--no-build-isolation", "--target", str(target)),
            str(archive),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the package's own folder: the import must come from the install
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    info: dict[str, object] = json.loads(result.stdout)
    assert str(info["file"]).startswith(str(target))
    return info


def _members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]


def _bare_package(tmp_path: Path) -> Path:
    """A trainer package whose parent has no setup.py, with data, junk and a subpackage."""
    package = tmp_path / "work" / "mytrainer"
    (package / "sub").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "__init__.py").write_text("VALUE = 42\n")
    (package / "task.py").write_text("print('training')\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "vocab.txt").write_text("a\nb\n")
    (package / "config.json").write_text('{"lr": 0.1}')
    (package / ".secret").write_text("token")
    (package / "__pycache__" / "task.cpython-311.pyc").write_bytes(b"\0")
    (package / "task.pyc").write_bytes(b"\0")
    return package


def test_census_trainer_from_its_parent_setup_py(tmp_path: Path) -> None:
    before = sorted(p.name for p in CENSUS_TRAINER.parent.iterdir())
    archive = build_package(CENSUS_TRAINER, out_dir=tmp_path / "dist")
    assert archive.name == "census_pytorch_trainer-0.1.0.tar.gz"
    assert {"setup.py", "PKG-INFO", "trainer/__init__.py", "trainer/task.py"} <= set(
        _members(archive)
    )
    # Like gcloud: egg-info and build output go elsewhere, the user's folder stays clean.
    assert sorted(p.name for p in CENSUS_TRAINER.parent.iterdir()) == before
    probe = "import json, trainer; print(json.dumps({'file': trainer.__file__}))"
    _install_and_import(archive, tmp_path, probe)


def test_census_trainer_without_a_setup_py_gets_a_generated_one(tmp_path: Path) -> None:
    package = tmp_path / "bare" / "trainer"
    shutil.copytree(CENSUS_TRAINER, package, ignore=shutil.ignore_patterns("__pycache__"))
    archive = build_package(package, out_dir=tmp_path / "dist")
    assert archive.name == "trainer-0.0.0.tar.gz"
    probe = (
        "import json, importlib.util, trainer; "
        "print(json.dumps({'file': trainer.__file__, "
        "'task': importlib.util.find_spec('trainer.task') is not None}))"
    )
    assert _install_and_import(archive, tmp_path, probe)["task"] is True


def test_generated_package_ships_data_and_skips_junk(tmp_path: Path) -> None:
    archive = build_package(_bare_package(tmp_path), out_dir=tmp_path / "dist")
    members = _members(archive)
    assert {"mytrainer/config.json", "mytrainer/sub/vocab.txt", "mytrainer/task.py"} <= set(members)
    assert not [m for m in members if ".secret" in m or "pycache" in m or m.endswith(".pyc")]
    probe = (
        "import json, importlib.resources as r, mytrainer, mytrainer.sub; "
        "print(json.dumps({'file': mytrainer.__file__, 'value': mytrainer.VALUE, "
        "'vocab': r.files('mytrainer.sub').joinpath('vocab.txt').read_text(), "
        "'config': r.files('mytrainer').joinpath('config.json').read_text()}))"
    )
    info = _install_and_import(archive, tmp_path, probe)
    assert info["value"] == 42 and info["vocab"] == "a\nb\n" and info["config"] == '{"lr": 0.1}'


def test_pyproject_only_parent_is_built_by_its_backend(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "trainer").mkdir(parents=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "pyproject-trainer"\nversion = "1.2.3"\n\n'
        '[tool.setuptools]\npackages = ["trainer"]\n'
    )
    archive = build_package(project / "trainer", out_dir=tmp_path / "dist")
    assert archive.name == "pyproject_trainer-1.2.3.tar.gz"
    probe = "import json, trainer; print(json.dumps({'file': trainer.__file__}))"
    _install_and_import(archive, tmp_path, probe)


def test_output_is_reproducible(tmp_path: Path) -> None:
    package = _bare_package(tmp_path)
    first = build_package(package, out_dir=tmp_path / "one").read_bytes()
    (package / "task.py").touch()  # a new mtime alone must not change the archive
    second = build_package(package, out_dir=tmp_path / "two").read_bytes()
    assert first == second
    census = [build_package(CENSUS_TRAINER, out_dir=tmp_path / d).read_bytes() for d in "ab"]
    assert census[0] == census[1]
    with tarfile.open(tmp_path / "one" / "mytrainer-0.0.0.tar.gz") as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert {m.mtime for m in tar.getmembers()} == {FIXED_MTIME}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in tar.getmembers()} == {(0, 0, "", "")}


def test_rebuild_overwrites_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    package = _bare_package(tmp_path)
    out = tmp_path / "dist"
    build_package(package, out_dir=out)
    (package / "task.py").write_text("print('changed')\n")
    archive = build_package(package, out_dir=out)
    assert [p.name for p in out.iterdir()] == [archive.name]
    with tarfile.open(archive) as tar:
        task = tar.extractfile("mytrainer-0.0.0/mytrainer/task.py")
        assert task is not None and task.read() == b"print('changed')\n"


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not a directory") as raised:
        build_package(tmp_path / "nope", out_dir=tmp_path / "dist")
    assert raised.value.field == "--package-path"


def test_folder_without_init(tmp_path: Path) -> None:
    (tmp_path / "trainer").mkdir()
    with pytest.raises(InvalidArgument, match=r"add an __init__\.py"):
        build_package(tmp_path / "trainer", out_dir=tmp_path / "dist")


def test_folder_name_must_be_importable(tmp_path: Path) -> None:
    (tmp_path / "my-trainer").mkdir()
    (tmp_path / "my-trainer" / "__init__.py").write_text("")
    with pytest.raises(InvalidArgument, match="cannot be imported"):
        build_package(tmp_path / "my-trainer", out_dir=tmp_path / "dist")


def test_failing_parent_setup_py_reports_its_output(tmp_path: Path) -> None:
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "__init__.py").write_text("")
    (tmp_path / "setup.py").write_text("raise SystemExit('setup.py says no')\n")
    with pytest.raises(FailedPrecondition, match=r"setup\.py says no") as raised:
        build_package(tmp_path / "trainer", out_dir=tmp_path / "dist")
    assert raised.value.field == "--package-path"


def test_parent_project_that_does_not_ship_the_package(tmp_path: Path) -> None:
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "__init__.py").write_text("")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("")
    (tmp_path / "setup.py").write_text(
        "from setuptools import setup\nsetup(name='other', version='1', packages=['other'])\n"
    )
    with pytest.raises(FailedPrecondition, match="does not contain the package 'trainer'"):
        build_package(tmp_path / "trainer", out_dir=tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())
