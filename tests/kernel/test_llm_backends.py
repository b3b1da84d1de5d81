"""LLM backend kinds from plugins (``register_llm_backends``), backends from settings, and
building them: unknown kinds, duplicate names and dangling fallbacks are configuration errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernos.kernel.errors import ConfigError
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.llm import (
    BackendConfig,
    BackendKind,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    LLMBackend,
    build_backends,
    configured_backends,
)
from kernos.kernel.pluginmanager import BUILTIN_PLUGINS, PluginManager
from kernos.kernel.settings import load_settings

LLM_BUILTINS = [b for b in BUILTIN_PLUGINS if b.module.startswith("kernos.plugins.")]


class EchoBackend(LLMBackend):
    """A third-party backend kind, the smallest that honours the contract."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(message={"role": "assistant", "content": "echo"}, model="echo")

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(content="echo", finish_reason="stop")

    async def models(self) -> list[str]:
        return ["echo"]


class EchoPlugin:
    @hookimpl
    def register_llm_backends(self, register):
        register(BackendKind(name="echo", build=EchoBackend, description="Echoes."))


class ClashingPlugin:
    @hookimpl
    def register_llm_backends(self, register):
        register(BackendKind(name="echo", build=EchoBackend))


class WrongTypePlugin:
    @hookimpl
    def register_llm_backends(self, register):
        register("echo")


def manager(*plugins: tuple[str, object]) -> PluginManager:
    pm = PluginManager(builtins=LLM_BUILTINS, entry_points=False)
    pm.load()  # built-ins first, as in a kernel; inline plugins come after them
    for name, plugin in plugins:
        pm.add(plugin, name=name)
    return pm


def test_the_built_in_kinds_are_registered_and_tagged() -> None:
    kinds = manager().llm_backend_kinds()
    assert {n: k.plugin for n, k in kinds.items()} == {
        "openai_compat": "kernos.plugins.llm_backends",
        "vllm": "kernos.plugins.llm_backends",
        "sim-llm": "kernos.plugins.llm_backends",
    }
    assert all(k.description for k in kinds.values())


def test_a_plugin_adds_a_kind_and_a_second_claim_to_its_name_fails() -> None:
    pm = manager(("echo-plugin", EchoPlugin()), ("clash", ClashingPlugin()))
    kinds = pm.llm_backend_kinds()
    assert kinds["echo"].plugin == "echo-plugin"
    [failed] = pm.failures()
    assert failed.name == "clash"
    assert "already registered by 'echo-plugin'" in (failed.error or "")


def test_a_plugin_cannot_take_a_built_in_kind_name() -> None:
    class Impostor:
        @hookimpl
        def register_llm_backends(self, register):
            register(BackendKind(name="vllm", build=EchoBackend))

    pm = manager(("impostor", Impostor()))
    assert pm.llm_backend_kinds()["vllm"].plugin == "kernos.plugins.llm_backends"
    assert [f.name for f in pm.failures()] == ["impostor"]


def test_registering_something_else_fails_the_plugin() -> None:
    pm = manager(("wrong", WrongTypePlugin()))
    assert "echo" not in pm.llm_backend_kinds()
    [failed] = pm.failures()
    assert "expects BackendKind" in (failed.error or "")


# -- Settings ----------------------------------------------------------------------------------


def write_toml(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "kernos.toml").write_text(text)


def test_backends_from_kernos_toml(kernos_home: Path) -> None:
    write_toml(
        kernos_home,
        """
[[llm_backends]]
name = "gpu"
kind = "vllm"
base_url = "http://10.0.0.5:8000/v1"
model = "Qwen/Qwen2.5-7B-Instruct"
concurrency = 256
fallback = ["sim"]

[[llm_backends]]
name = "sim"
kind = "sim-llm"
options = { seed = 3 }
""",
    )
    configs = configured_backends(load_settings())
    assert [(c.name, c.kind) for c in configs] == [("gpu", "vllm"), ("sim", "sim-llm")]
    assert configs[0].concurrency == 256 and configs[0].fallback == ["sim"]
    assert configs[1].options == {"seed": 3}


def test_the_environment_adds_one_default_backend(kernos_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERNOS_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("KERNOS_LLM_MODEL", "llama3.2")
    monkeypatch.setenv("KERNOS_LLM_API_KEY", "sk-very-secret")
    [default] = configured_backends(load_settings())
    assert (default.name, default.kind, default.model) == ("default", "openai_compat", "llama3.2")
    assert default.api_key is not None and default.api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(default)


def test_no_backend_unless_configured(kernos_home: Path, monkeypatch) -> None:
    assert configured_backends(load_settings()) == []
    monkeypatch.setenv("KERNOS_LLM_MODEL", "llama3.2")
    with pytest.raises(ConfigError, match="KERNOS_LLM_BASE_URL is not"):
        configured_backends(load_settings())


def test_the_default_name_cannot_be_taken_twice(kernos_home: Path, monkeypatch) -> None:
    write_toml(kernos_home, '[[llm_backends]]\nname = "default"\nkind = "sim-llm"\n')
    monkeypatch.setenv("KERNOS_LLM_BASE_URL", "http://127.0.0.1:11434/v1")
    with pytest.raises(ConfigError, match="named 'default'"):
        configured_backends(load_settings())


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('name = "GPU box"', r"llm_backends\[0\]\.name"),
        ('name = "gpu"\nconcurrency = 0', r"llm_backends\[0\]\.concurrency"),
        ('name = "gpu"\nbase_ulr = "http://x/v1"', r"llm_backends\[0\]\.base_ulr: unknown setting"),
    ],
)
def test_a_bad_backend_table_names_the_key(kernos_home: Path, table: str, named: str) -> None:
    write_toml(kernos_home, f"[[llm_backends]]\n{table}\n")
    with pytest.raises(ConfigError, match=rf"kernos.toml: {named}"):
        load_settings()


def test_an_api_key_in_a_bad_table_is_never_echoed(kernos_home: Path) -> None:
    write_toml(kernos_home, '[[llm_backends]]\nname = "x"\napi_key = 42\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "42" not in str(caught.value)


# -- Building ---------------------------------------------------------------------------------


async def test_building_the_configured_backends() -> None:
    kinds = manager(("echo-plugin", EchoPlugin())).llm_backend_kinds()
    backends = build_backends(
        [
            BackendConfig(name="local", base_url="http://127.0.0.1:1/v1", fallback=["sim"]),
            BackendConfig(name="sim", kind="sim-llm"),
            BackendConfig(name="mine", kind="echo"),
        ],
        kinds,
    )
    assert [type(b).__name__ for b in backends.values()] == [
        "OpenAICompatBackend",
        "SimLLMBackend",
        "EchoBackend",
    ]
    assert (await backends["mine"].chat(ChatRequest(messages=[]))).message["content"] == "echo"
    for backend in backends.values():
        await backend.aclose()


def test_an_unknown_kind_names_the_known_ones() -> None:
    kinds = manager().llm_backend_kinds()
    with pytest.raises(ConfigError) as caught:
        build_backends([BackendConfig(name="t", kind="triton")], kinds)
    assert "unknown kind 'triton'" in str(caught.value)
    assert "known kinds: openai_compat, sim-llm, vllm" in str(caught.value)


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        (
            [BackendConfig(name="a", kind="sim-llm", fallback=["b"])],
            "falls back to 'b', which is no configured backend",
        ),
        ([BackendConfig(name="a", kind="sim-llm", fallback=["a"])], "which is itself"),
        (
            [BackendConfig(name="a", kind="sim-llm"), BackendConfig(name="a", kind="vllm")],
            "two backends are named 'a'",
        ),
        (
            [BackendConfig(name="a", kind="vllm")],
            "^llm_backends: backend .a. \\(kind .vllm.\\) needs base_url",
        ),
    ],
)
def test_bad_configurations_are_refused(configs: list[BackendConfig], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_backends(configs, manager().llm_backend_kinds())


def test_a_build_that_crashes_is_a_config_error_naming_the_backend() -> None:
    def broken(config: BackendConfig) -> LLMBackend:
        raise RuntimeError("no GPU")

    with pytest.raises(ConfigError, match=r"backend 'x' \(kind 'odd'\) could not be built.*no GPU"):
        build_backends(
            [BackendConfig(name="x", kind="odd")], {"odd": BackendKind(name="odd", build=broken)}
        )
