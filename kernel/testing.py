"""Pytest fixtures for Kernos plugin authors (loaded automatically through ``pytest11``).

* ``kernos_home``: an empty, temporary ``KERNOS_HOME`` (and no other ``KERNOS_*`` variables
  leaking in from the developer's shell).
* ``kernos_database_url``: ``None`` (a SQLite file in the home); override it in a conftest to
  run the same tests on PostgreSQL.
* ``kernos_settings``: ``Settings`` for that home and database.
* ``kernos_plugins``: a fresh ``PluginManager`` (built-ins and installed entry points).
* ``kernos_plugin``: register an inline plugin object for one test:
  ``kernos_plugin(MyPlugin())``.
* ``kernos_kernel``: a started ``Kernel`` on all of the above (needs ``pytest-asyncio``), stopped
  after the test. Register inline plugins in a fixture requested *before* it.

Example::

    @pytest.fixture
    def my_plugin(kernos_plugin):
        kernos_plugin(MyPlugin())

    async def test_my_tool_is_registered(my_plugin, kernos_kernel):
        assert "greet" in kernos_kernel.catalog.tools
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.pluginmanager import PluginManager
    from kernos.kernel.settings import Settings

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]


@pytest.fixture
def kernos_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary, empty ``KERNOS_HOME``; other ``KERNOS_*`` variables are cleared.

    ``KERNOS_API_PORT`` is set to a free port, so a kernel that serves its API (in this
    process or a ``kernos up`` subprocess) never collides with another one.
    """
    import socket

    for name in list(os.environ):
        if name.startswith("KERNOS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "kernos-home"
    monkeypatch.setenv("KERNOS_HOME", str(home))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("KERNOS_API_PORT", str(sock.getsockname()[1]))
    yield home


@pytest.fixture
def kernos_database_url() -> str | None:
    """Database for ``kernos_settings``: ``None`` means the SQLite file in ``kernos_home``."""
    return None


@pytest.fixture
def kernos_settings(kernos_home: Path, kernos_database_url: str | None) -> Settings:
    """Settings for the temporary home (and ``kernos_database_url`` if set)."""
    from kernos.kernel.settings import load_settings

    overrides: dict[str, Any] = {"home": kernos_home}
    if kernos_database_url is not None:
        overrides["database_url"] = kernos_database_url
    return load_settings(**overrides)


@pytest.fixture
def kernos_plugins() -> PluginManager:
    """A fresh plugin manager: built-ins plus installed entry-point plugins."""
    from kernos.kernel.pluginmanager import PluginManager

    return PluginManager()


@pytest.fixture
def kernos_plugin(kernos_plugins: PluginManager) -> Callable[..., None]:
    """Register an inline plugin (object or module) for this test only."""

    def add(plugin: object, *, name: str | None = None, essential: bool = False) -> None:
        plugin_name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        kernos_plugins.add(plugin, name=plugin_name, essential=essential)

    return add


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def kernos_kernel(
        kernos_settings: Settings, kernos_plugins: PluginManager
    ) -> AsyncIterator[Kernel]:
        """A started kernel on the temporary home, with the test's inline plugins."""
        from kernos.kernel.kernel import Kernel

        kernel = Kernel(kernos_settings, plugins=kernos_plugins)
        await kernel.start()
        try:
            yield kernel
        finally:
            await kernel.stop()

else:  # pragma: no cover

    @pytest.fixture
    def kernos_kernel() -> None:
        """Needs pytest-asyncio."""
        pytest.fail("the kernos_kernel fixture needs pytest-asyncio: pip install pytest-asyncio")
