"""Shared helpers for the benchmark scripts in ``bench/`` (not a test module, no timings asserted).

Every script runs on a temporary ``KERNOS_HOME`` with default settings (a SQLite file, WAL,
``synchronous=FULL``), prints a Markdown section and exits 0. Targets are reported as
"met" / "not met", never asserted: timing does not belong in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

ADMIN_TENANT = "default"
ADMIN_NAME = "admin"


def machine_line() -> str:
    """The machine the numbers come from, like ``bench/run.py`` prints it."""
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB"
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores{mem}, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )


def parse_args(description: str) -> argparse.Namespace:
    """``--quick`` (a smoke run under a minute) is the only option every script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes: a smoke run, not numbers to quote"
    )
    return parser.parse_args()


def require(module: str, distribution: str) -> None:
    """Stop with an install hint if a baseline's package is missing."""
    import importlib.util

    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None or (
        importlib.util.find_spec(module) is None
    ):
        sys.exit(
            f"this benchmark's baseline needs {distribution}: "
            f"pip install {distribution} (it belongs in the dev extra)"
        )


def median(values: Iterable[float]) -> float:
    """Median of ``values``."""
    return statistics.median(list(values))


def met(ok: bool) -> str:
    """How a target is reported."""
    return "**met**" if ok else "**not met**"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def emit(lines: Iterable[str]) -> None:
    """Print the section and flush (run.py collects it through a pipe)."""
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def admin() -> Any:
    """The local admin principal (an admin of the default tenant)."""
    from kernos.kernel.identity import Principal, PrincipalKind

    return Principal(tenant=ADMIN_TENANT, name=ADMIN_NAME, kind=PrincipalKind.PERSON)


POLICY_LINES = 410
"""The size of the policy the kernel benchmarks decide with (the policy issue's figure)."""


async def load_policy(kernel: Any) -> int:
    """Add the synthetic 410-line RBAC-with-domains policy (5 tenants, 50 tools, 200 users) to
    the kernel's policy, so every decision runs against a policy of realistic size. The local
    admin keeps its role; returns the number of lines in force."""
    from kernos.kernel.errors import Conflict
    from kernos.policy.service import policy_services
    from kernos.policy.synthetic import generate_policy

    engine = policy_services(kernel).engine
    for line in generate_policy(size=POLICY_LINES).lines:
        with contextlib.suppress(Conflict):  # the role rules are in the default policy too
            await engine.add(line.text)
    return len(await engine.list())


@contextlib.asynccontextmanager
async def temp_kernel(
    plugin: object, *, name: str = "bench-agents", **overrides: Any
) -> AsyncIterator[Any]:
    """A started kernel on a fresh temporary home (default settings unless ``overrides``)."""
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.pluginmanager import PluginManager
    from kernos.kernel.settings import load_settings

    for key in list(os.environ):  # the developer's shell must not change what we measure
        if key.startswith("KERNOS_"):
            del os.environ[key]
    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        settings = load_settings(home=Path(tmp) / "home", **overrides)
        plugins = PluginManager(entry_points=False)
        plugins.add(plugin, name=name)
        kernel = Kernel(settings, plugins=plugins)
        await kernel.start()
        await load_policy(kernel)
        try:
            yield kernel
        finally:
            await kernel.stop()
