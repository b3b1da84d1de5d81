"""Both wheels contain every module on disk: a new subpackage can never be silently dropped."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNOS_FOLDERS = ("kernel", "policy", "memory", "tools", "agents", "plugins", "api", "tui")
SKIP = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.db*"
)
DATA_SUFFIXES = {".py", ".typed", ".mako", ".tcss"}


def _build_wheel(source: Path, out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        check=True,
    )
    [wheel] = out.glob("*.whl")
    return wheel


def _files_on_disk(folder: Path, prefix: str, *, exclude: set[str] = frozenset()) -> set[str]:
    found = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and path.suffix in DATA_SUFFIXES and not (set(rel.parts) & {"build"}):
            if rel.as_posix() in exclude or "__pycache__" in rel.parts:
                continue
            found.add(f"{prefix}/{rel.as_posix()}")
    return found


def _files_in_wheel(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if Path(n).suffix in DATA_SUFFIXES}


@pytest.mark.slow
def test_kernos_wheel_holds_every_module_of_every_folder(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=SKIP)
    shutil.rmtree(source / "edge")  # its own distribution
    wheel = _build_wheel(source, tmp_path / "dist")
    in_wheel = _files_in_wheel(wheel)
    expected = set()
    for folder in KERNOS_FOLDERS:
        expected |= _files_on_disk(ROOT / folder, f"kernos/{folder}")
        assert f"kernos/{folder}/py.typed" in in_wheel, f"{folder} lacks its py.typed"
    missing = expected - in_wheel
    assert not missing, f"missing from the kernos wheel: {sorted(missing)}"
    assert "kernos/__init__.py" not in in_wheel  # a namespace shared with kernos-edge
    assert not any(n.startswith("kernos/edge/") for n in in_wheel)
    assert "kernos/kernel/storage/migrations/script.py.mako" in in_wheel
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        text = zf.read(entry_points).decode()
    assert "kernos = kernos.kernel.cli:main" in text
    assert "[pytest11]" in text


@pytest.mark.slow
def test_edge_wheel_holds_its_modules_and_nothing_else(tmp_path: Path) -> None:
    source = tmp_path / "edge"
    shutil.copytree(ROOT / "edge", source, ignore=SKIP)
    wheel = _build_wheel(source, tmp_path / "dist")
    in_wheel = _files_in_wheel(wheel)
    expected = _files_on_disk(ROOT / "edge", "kernos/edge", exclude={"setup.py"})
    assert expected <= in_wheel, f"missing: {sorted(expected - in_wheel)}"
    assert in_wheel == expected, f"unexpected: {sorted(in_wheel - expected)}"
    assert "kernos/edge/py.typed" in in_wheel
