"""Maps the design-card folders at the repository root into the ``kernos`` namespace.

Each folder (``kernel/``, ``policy/``, ...) becomes ``kernos.<folder>``; every subpackage under
it is found by walking the tree, so a new subpackage can never be silently left out of the
wheel (``tests/test_packaging.py`` checks the built wheel against the folders on disk).
``kernos`` itself is a namespace package shared with the ``kernos-edge`` distribution.
"""

from __future__ import annotations

from setuptools import find_packages, setup

FOLDERS = ("kernel", "policy", "memory", "tools", "agents", "plugins", "api", "tui")

package_dir: dict[str, str] = {}
packages: list[str] = []
for folder in FOLDERS:
    package_dir[f"kernos.{folder}"] = folder
    packages.append(f"kernos.{folder}")
    packages.extend(f"kernos.{folder}.{sub}" for sub in find_packages(where=folder))

setup(package_dir=package_dir, packages=packages)
