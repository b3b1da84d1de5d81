"""Meta-tests: every hook is documented with its signature and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy

from kernos.kernel import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def _hooks() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def test_the_hook_set_is_what_the_docs_and_tests_expect() -> None:
    assert set(_hooks()) >= {
        "register_commands",
        "register_tools",
        "register_agents",
        "on_startup",
        "on_shutdown",
    }


def test_every_hook_has_a_docstring() -> None:
    for name in _hooks():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_every_hook_is_documented_with_its_signature() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text()
    for name, signature in _hooks().items():
        params = ", ".join(signature.parameters)
        assert f"### `{name}({params})`" in doc, f"docs/plugins.md lacks a section for {name}"


def test_every_hook_is_implemented_in_some_test() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    sources += (ROOT / "examples" / "kernos-hello" / "kernos_hello" / "__init__.py").read_text()
    for name in _hooks():
        pattern = rf"@hookimpl\s*\n\s*(async\s+)?def {name}\("
        assert re.search(pattern, sources), f"no test implements the hook {name}"


def test_hookimpl_marker_is_reexported_for_plugin_authors() -> None:
    from kernos.plugins import hookimpl

    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == hookspecs.PROJECT
