"""Maps this folder to ``kernos.edge`` and walks it for subpackages (see the root setup.py).

The folder is both the distribution root and the package, so this file and the build's own
files are kept out of the installed package.
"""

from __future__ import annotations

from typing import Any

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

_NOT_MODULES = {"setup"}


class BuildPy(build_py):
    """Leave ``setup.py`` out of ``kernos.edge``."""

    def find_package_modules(self, package: str, package_dir: str) -> list[Any]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "kernos.edge" and m[1] in _NOT_MODULES)]


packages = ["kernos.edge"] + [
    f"kernos.edge.{sub}" for sub in find_packages(where=".", exclude=["build*", "tests*"])
]
setup(package_dir={"kernos.edge": "."}, packages=packages, cmdclass={"build_py": BuildPy})
