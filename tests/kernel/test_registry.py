"""The model registry on a real kernel (SQLite and PostgreSQL, the policy layer's audit sink)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from kernos.kernel import model_artifacts
from kernos.kernel.errors import CheckFailed, Conflict, InvalidInput, NotFound
from kernos.kernel.hookspecs import hookimpl
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN, Principal, PrincipalKind
from kernos.kernel.kernel import Kernel
from kernos.kernel.model_records import (
    DeploymentStage,
    ModelKind,
    ModelStage,
    ModelVersion,
    VerifyProblem,
)
from kernos.kernel.model_traffic import split_bucket
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.registry import ModelRegistry
from kernos.kernel.settings import Settings, load_settings
from kernos.kernel.storage.models import AuditRow, ModelDeploymentRow, ModelVersionRow

ADMIN = Principal(tenant=DEFAULT_TENANT, name=LOCAL_ADMIN, kind=PrincipalKind.PERSON)


def artifact(folder: Path, name: str, size: int = 4096) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@dataclass
class Keys:
    private: Path
    public: Path
    fingerprint: str
    key: Ed25519PrivateKey
    other_private: Path


def write_key(folder: Path, name: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    key = Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = folder / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, private, public


@pytest.fixture
def keys(kernos_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keys]:
    """A trusted signing key (in KERNOS_MODEL_TRUSTED_KEYS) and an untrusted one."""
    folder = tmp_path / "keys"
    folder.mkdir()
    key, private, public = write_key(folder, "trusted")
    _, other, _ = write_key(folder, "untrusted")
    monkeypatch.setenv("KERNOS_MODEL_TRUSTED_KEYS", str(public))
    yield Keys(
        private=private,
        public=public,
        fingerprint=model_artifacts.fingerprint(key.public_key()),
        key=key,
        other_private=other,
    )


async def audit_events(kernel: Kernel) -> list[str]:
    async with kernel.db.read() as session:
        rows = (await session.scalars(select(AuditRow).where(AuditRow.kind == "model"))).all()
    return [row.event for row in rows]


async def stages(kernel: Kernel, name: str) -> dict[str, str]:
    return {m.version: m.deployment for m in await kernel.models.versions(name)}


async def test_register_list_verify_promote_rollback(kernos_kernel: Kernel, tmp_path: Path) -> None:
    models = kernos_kernel.models
    one = artifact(tmp_path, "one.bin", 3 * model_artifacts.CHUNK_BYTES + 17)
    two = artifact(tmp_path, "two.bin")
    first = await models.register(
        one,
        name="chat",
        version="1",
        registered_by=ADMIN,
        kind="llm",
        provenance={"source": "unit-test", "run": 1},
        price_per_1k_input=0.5,
        price_per_1k_output=1.5,
    )
    assert first.kind is ModelKind.LLM and first.stage is ModelStage.REGISTERED
    assert first.size == one.stat().st_size and first.path == str(one)
    assert first.registered_by == "default/admin" and first.signature is None
    assert first.cost(input_tokens=2000, output_tokens=1000) == pytest.approx(2.5)
    await models.register(two, name="chat", version="2", registered_by=ADMIN)
    with pytest.raises(Conflict, match="already registered"):
        await models.register(two, name="chat", version="2", registered_by=ADMIN)

    assert [m.ref for m in await models.list_models()] == ["chat@1", "chat@2"]
    assert (await models.get("chat")).version == "2"  # nothing live: the newest
    result = await models.verify("chat", "1")
    assert result.ok and result.actual_sha256 == first.sha256 and result.problems == ()

    await models.promote("chat@1", "live", by=ADMIN)
    assert (await models.get("chat")).version == "1"  # the live one
    await models.promote("chat@2", "live", by=ADMIN)
    assert await stages(kernos_kernel, "chat") == {"1": "retired", "2": "live"}
    back = await models.rollback("chat", by=ADMIN)
    assert back.version == "1" and back.stage is ModelStage.LIVE
    assert await stages(kernos_kernel, "chat") == {"1": "live", "2": "retired"}
    with pytest.raises(Conflict, match="no earlier live version"):
        await models.rollback("chat", by=ADMIN)  # a stack: no toggling back to 2

    async with kernos_kernel.db.read() as session:
        history = (await session.scalars(select(ModelDeploymentRow))).all()
    assert [(h.version, h.action, h.stage) for h in history] == [
        ("1", "promote", "live"),
        ("1", "demote", "retired"),
        ("2", "promote", "live"),
        ("2", "demote", "retired"),
        ("1", "rollback", "live"),
    ]
    assert await audit_events(kernos_kernel) == [
        "model.registered",
        "model.registered",
        "model.promoted",
        "model.promoted",
        "model.rolled_back",
    ]


async def test_a_changed_byte_fails_verification_and_deploys_nothing(
    kernos_kernel: Kernel, tmp_path: Path
) -> None:
    models = kernos_kernel.models
    await models.register(
        artifact(tmp_path, "a.onnx"), name="hazard", version="1", registered_by=ADMIN
    )
    damaged = artifact(tmp_path, "b.onnx")
    await models.register(damaged, name="hazard", version="2", registered_by=ADMIN, kind="onnx")
    await models.promote("hazard@1", "live", by=ADMIN)
    flip_byte(damaged)

    result = await models.verify("hazard", "2")
    assert not result.ok and result.problems == (VerifyProblem.BYTES_CHANGED,)
    assert "bytes changed" in result.detail and result.actual_sha256 != result.expected_sha256
    with pytest.raises(CheckFailed, match="bytes_changed") as refused:
        await models.promote("hazard@2", "live", by=ADMIN)
    assert "nothing changed" in str(refused.value)
    with pytest.raises(CheckFailed):
        await models.promote("hazard@2", "canary:5", by=ADMIN)
    assert await stages(kernos_kernel, "hazard") == {"1": "live", "2": "registered"}
    # Retiring a damaged version needs no verification.
    assert (await models.promote("hazard@2", "retired", by=ADMIN)).stage is ModelStage.RETIRED

    damaged.unlink()
    gone = await models.verify("hazard", "2")
    assert gone.problems == (VerifyProblem.MISSING_FILE,) and gone.actual_sha256 is None
    events = await audit_events(kernos_kernel)
    assert events.count("model.verify_failed") == 2
    assert events.count("model.promote_refused") == 2


async def test_signatures_and_trusted_keys(
    keys: Keys, kernos_kernel: Kernel, tmp_path: Path
) -> None:
    models = kernos_kernel.models
    path = artifact(tmp_path, "signed.bin")
    signed = await models.register(
        path,
        name="router",
        version="1",
        registered_by=ADMIN,
        provenance={"source": "lab"},
        signing_key=keys.private,
    )
    assert signed.key_fingerprint == keys.fingerprint and signed.signature is not None
    assert (await models.verify("router", "1")).ok

    with pytest.raises(InvalidInput, match="not trusted"):
        await models.register(
            path, name="router", version="2", registered_by=ADMIN, signing_key=keys.other_private
        )
    # A signature made elsewhere: checked against the trusted keys at registration.
    digest = model_artifacts.hash_file(path)
    body = model_artifacts.manifest(
        "router", "3", sha256=digest.sha256, size=digest.size, provenance={}
    )
    wrong = model_artifacts.sign(keys.key, body.replace(b'"3"', b'"4"'))
    with pytest.raises(InvalidInput, match="does not verify"):
        await models.register(
            path, name="router", version="3", registered_by=ADMIN, signature=wrong
        )
    outside = await models.register(
        path,
        name="router",
        version="3",
        registered_by=ADMIN,
        signature=model_artifacts.sign(keys.key, body),
    )
    assert outside.key_fingerprint == keys.fingerprint
    assert not [m for m in await models.list_models() if m.version == "2"]

    # A record changed behind the registry's back no longer matches its signature.
    await kernos_kernel.db.write(
        lambda session: session.execute(
            update(ModelVersionRow)
            .where(ModelVersionRow.version == "1")
            .values(provenance={"source": "elsewhere"})
        )
    )
    bad = await models.verify("router", "1")
    assert bad.problems == (VerifyProblem.BAD_SIGNATURE,)
    with pytest.raises(CheckFailed, match="bad_signature"):
        await models.promote("router@1", "live", by=ADMIN)
    assert (await models.get("router", "1")).stage is ModelStage.REGISTERED

    # Once its key is no longer trusted, a signed version fails verification.
    distrusting = ModelRegistry(
        kernos_kernel.db,
        kernos_kernel.clock,
        settings=load_settings(home=kernos_kernel.settings.home, model_trusted_keys=[]),
        audit=lambda: kernos_kernel.audit_sink,
    )
    untrusted = await distrusting.verify("router", "3")
    assert untrusted.problems == (VerifyProblem.UNTRUSTED_KEY,)
    with pytest.raises(CheckFailed, match="untrusted_key"):
        await distrusting.promote("router@3", "shadow", by=ADMIN)


async def test_a_content_check_that_raises_blocks_promotion(
    kernos_kernel: Kernel, tmp_path: Path
) -> None:
    models = kernos_kernel.models
    await models.register(artifact(tmp_path, "m.bin"), name="m", version="1", registered_by=ADMIN)
    seen: list[ModelVersion] = []

    async def no_pickles(model: ModelVersion) -> None:
        seen.append(model)
        raise ValueError("found a pickle opcode at offset 12")

    remove = models.add_check(no_pickles)
    with pytest.raises(CheckFailed, match="no_pickles refused it: found a pickle"):
        await models.promote("m@1", "live", by=ADMIN)
    assert [m.ref for m in seen] == ["m@1"]
    assert (await models.get("m", "1")).stage is ModelStage.REGISTERED
    assert "model.promote_refused" in await audit_events(kernos_kernel)
    remove()
    assert (await models.promote("m@1", "live", by=ADMIN)).stage is ModelStage.LIVE


async def test_canary_split_is_deterministic_and_close_to_its_share(
    kernos_kernel: Kernel, tmp_path: Path
) -> None:
    models = kernos_kernel.models
    for version in ("1", "2", "3"):
        path = artifact(tmp_path, f"v{version}.bin", 64)
        await models.register(path, name="chat", version=version, registered_by=ADMIN)
    with pytest.raises(Conflict, match="no other live version"):
        await models.promote("chat@2", "canary:10", by=ADMIN)
    with pytest.raises(NotFound, match="no live version"):
        await models.route("chat", key="anything")
    await models.promote("chat@1", "live", by=ADMIN)
    await models.promote("chat@2", DeploymentStage.parse("canary:10"), by=ADMIN)
    await models.promote("chat@3", "shadow", by=ADMIN)

    keys = [f"process-{i}" for i in range(10_000)]
    choices = [await models.route("chat", key=key) for key in keys]
    canary = sum(1 for c in choices if c.canary)
    assert 900 <= canary <= 1100, canary
    assert all(c.version == ("2" if c.canary else "1") for c in choices)
    assert all(c.shadows == ("3",) for c in choices)
    assert all(
        c.canary == (split_bucket("chat", k) < 1000) for c, k in zip(choices, keys, strict=True)
    )
    # Another registry on the same database (another process, a restart) splits the same way.
    again = ModelRegistry(
        kernos_kernel.db,
        kernos_kernel.clock,
        settings=kernos_kernel.settings,
        audit=lambda: kernos_kernel.audit_sink,
    )
    assert [await again.route("chat", key=k) for k in keys[:500]] == choices[:500]

    # A new canary replaces the old one; a change is seen by the next route.
    await models.promote("chat@3", "canary:50", by=ADMIN)
    assert await stages(kernos_kernel, "chat") == {"1": "live", "2": "retired", "3": "canary:50"}
    halves = [await models.route("chat", key=k) for k in keys[:2000]]
    assert 800 <= sum(1 for c in halves if c.version == "3") <= 1200
    assert all(c.shadows == () for c in halves)

    models.record("chat", "1", latency=0.2, ok=True)
    models.record("chat", "1", latency=0.4, ok=False)
    models.record("chat", "3", latency=0.1, ok=True, shadow=True)
    one, three = models.stats("chat")
    assert (one.calls, one.errors, one.error_rate) == (2, 1, 0.5)
    assert one.mean_latency == pytest.approx(0.3) and one.percentile(0.95) == 0.4
    assert (three.version, three.shadow_calls) == ("3", 1)


async def test_copy_into_home_and_bad_input(kernos_kernel: Kernel, tmp_path: Path) -> None:
    models = kernos_kernel.models
    source = artifact(tmp_path, "weights.bin")
    copied = await models.register(
        source, name="local", version="1.0", registered_by=ADMIN, copy=True
    )
    target = kernos_kernel.settings.home / "models" / "local" / "1.0" / "weights.bin"
    assert copied.path == str(target) and target.read_bytes() == source.read_bytes()
    source.unlink()  # the copy is what is verified
    assert (await models.verify("local")).ok

    with pytest.raises(InvalidInput, match="relative"):
        await models.register("weights.bin", name="x", version="1", registered_by=ADMIN)
    with pytest.raises(InvalidInput, match="does not exist"):
        await models.register(tmp_path / "nope", name="x", version="1", registered_by=ADMIN)
    with pytest.raises(InvalidInput, match="model name"):
        await models.register(target, name="bad/name", version="1", registered_by=ADMIN)
    with pytest.raises(InvalidInput, match="kind"):
        await models.register(target, name="x", version="1", registered_by=ADMIN, kind="pt")
    for stage in ("canary:0", "canary:100", "canary", "blue", "live:5"):
        with pytest.raises(InvalidInput):
            DeploymentStage.parse(stage)
    for unknown in (
        models.get("ghost"),
        models.verify("ghost"),
        models.promote("ghost@1", "live", by=ADMIN),
        models.rollback("ghost", by=ADMIN),
        models.promote("local@9", "live", by=ADMIN),
    ):
        with pytest.raises(NotFound):
            await unknown
    with pytest.raises(InvalidInput, match="NAME@VERSION"):
        await models.promote("local", "live", by=ADMIN)


class OnnxOnly:
    """A plugin whose content check refuses artifacts that are not ONNX-looking."""

    @hookimpl
    def register_model_checks(self, register: Any) -> None:
        async def onnx_magic(model: ModelVersion) -> None:
            head = await asyncio.to_thread(Path(model.path).read_bytes)
            if model.kind == "onnx" and not head.startswith(b"\x08"):
                raise CheckFailed(f"{model.ref} is not an ONNX protobuf")

        register(onnx_magic)


async def test_plugins_add_content_checks_through_the_hook(
    kernos_settings: Settings, tmp_path: Path
) -> None:
    plugins = PluginManager(entry_points=False)
    plugins.add(OnnxOnly(), name="onnx-only")
    async with Kernel(kernos_settings, plugins=plugins) as kernel:
        bogus = tmp_path / "bogus.onnx"
        bogus.write_bytes(b"not a model")
        await kernel.models.register(
            bogus, name="hazard", version="1", kind="onnx", registered_by=ADMIN
        )
        with pytest.raises(CheckFailed, match="not an ONNX protobuf"):
            await kernel.models.promote("hazard@1", "live", by=ADMIN)
        good = tmp_path / "good.onnx"
        good.write_bytes(b"\x08\x07onnx")
        await kernel.models.register(
            good, name="hazard", version="2", kind="onnx", registered_by=ADMIN
        )
        assert (await kernel.models.promote("hazard@2", "live", by=ADMIN)).stage is ModelStage.LIVE
