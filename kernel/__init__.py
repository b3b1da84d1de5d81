"""The Kernos kernel: processes, the governed syscall pipeline, storage, plugins and the CLI root.

Import what you need from its modules (``kernos.kernel.kernel.Kernel``,
``kernos.kernel.settings.load_settings``, ...); this package's own namespace stays light so
the CLI starts fast.
"""

from __future__ import annotations

import importlib.metadata


def kernos_version() -> str:
    """The installed ``kernos`` distribution's version."""
    try:
        return importlib.metadata.version("kernos")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"
