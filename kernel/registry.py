"""The model registry: LLMs and other artifacts by name and version, and their deployment.

A version is registered with its artifact's SHA-256 and size (hashed in chunks off the event
loop), optionally an Ed25519 signature over its manifest (see ``model_artifacts``), its
provenance and prices. Deploying it (``promote`` to ``shadow``, ``canary:PCT`` or ``live``)
first verifies it — the bytes must still hash to the digest, the signature must match and its
key be trusted — then runs the content checks plugins added (``add_check``); any failure
refuses the promotion and changes nothing. One version per name is live: promoting another
retires it, and ``rollback`` brings it back. Every change, refusal and failed verification is
audited in the same transaction as the change (or on its own when nothing changed).

``route`` is the traffic decision the LLM scheduler acts on (canary split by a stable hash of
the request key, shadows mirrored), and ``record``/``stats`` keep per-version figures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from kernos.kernel import model_artifacts as artifacts
from kernos.kernel.clock import Clock
from kernos.kernel.errors import CheckFailed, Conflict, InvalidInput, NotFound
from kernos.kernel.identity import DEFAULT_TENANT, Principal
from kernos.kernel.model_deployments import (
    apply_promotion,
    apply_rollback,
    history_query,
    rollback_target,
    version_row,
)
from kernos.kernel.model_records import (
    DEPLOYING,
    DeploymentStage,
    ModelKind,
    ModelStage,
    ModelVersion,
    VerifyResult,
    check_kind,
    check_model_name,
    check_provenance,
    check_version,
    parse_ref,
)
from kernos.kernel.model_traffic import Deployed, RouteChoice, Router, TrafficBook, VersionStats
from kernos.kernel.settings import Settings
from kernos.kernel.storage.database import Database
from kernos.kernel.storage.models import ModelVersionRow
from kernos.kernel.syscalls import AuditRecord, AuditSink

ModelCheck = Callable[[ModelVersion], Awaitable[None]]
"""A content check: returns to pass, raises (with a message saying why) to refuse."""

KERNEL_PRINCIPAL = "kernel"
"""Who audit records name when no caller is known (a verify from inside the kernel)."""


class ModelRegistry:
    """Model versions in the kernel database, their verification and deployment."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        settings: Settings,
        audit: Callable[[], AuditSink],
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._audit = audit  # a getter: the policy layer replaces the sink during start
        self._checks: list[ModelCheck] = []
        self._trusted: dict[str, Ed25519PublicKey] | None = None
        self._router = Router(self._deployed)
        self.traffic = TrafficBook()
        """Per-version latency and error figures (``record`` and ``stats``)."""

    # -- Content checks ---------------------------------------------------------------------

    def add_check(self, check: ModelCheck) -> Callable[[], None]:
        """Run ``check`` before every promotion to shadow, canary or live; returns a remover."""
        self._checks.append(check)

        def remove() -> None:
            if check in self._checks:
                self._checks.remove(check)

        return remove

    # -- Reading ----------------------------------------------------------------------------

    async def list_models(self, *, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name`` only, if given), by name then registration order."""
        query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.id)
        if name is not None:
            query = query.where(ModelVersionRow.name == name)
        async with self._db.read() as session:
            rows = (await session.scalars(query)).all()
        return [ModelVersion.from_row(row) for row in rows]

    async def versions(self, name: str) -> list[ModelVersion]:
        """The versions of ``name``, oldest first; ``NotFound`` if there are none."""
        found = await self.list_models(name=name)
        if not found:
            raise NotFound(_unknown(name))
        return found

    async def get(self, name: str, version: str | None = None) -> ModelVersion:
        """One version; without ``version`` the live one, else the newest. ``NotFound``."""
        found = await self.versions(name)
        if version is None:
            live = [v for v in found if v.stage is ModelStage.LIVE]
            return live[0] if live else found[-1]
        for item in found:
            if item.version == version:
                return item
        raise NotFound(
            f"model {name!r} has no version {version!r}; `kernos models list` shows the versions"
        )

    # -- Registering ------------------------------------------------------------------------

    async def register(
        self,
        path: Path | str,
        *,
        name: str,
        version: str,
        registered_by: Principal,
        kind: ModelKind | str = ModelKind.OTHER,
        provenance: Mapping[str, Any] | None = None,
        price_per_1k_input: float | None = None,
        price_per_1k_output: float | None = None,
        signing_key: Path | str | None = None,
        signature: str | None = None,
        copy: bool = False,
    ) -> ModelVersion:
        """Register the artifact at ``path`` (absolute, on the kernel's machine) as NAME@VERSION.

        ``signing_key`` (an Ed25519 private key PEM the kernel reads) signs the manifest here;
        ``signature`` (hex) is one made elsewhere over the same manifest. Either must verify
        with a key in ``model_trusted_keys``. ``copy`` keeps a copy under
        ``KERNOS_HOME/models/NAME/VERSION/``. Raises ``InvalidInput`` (bad names, unreadable
        file or key, untrusted key, wrong signature) and ``Conflict`` (the version exists).
        """
        check_model_name(name)
        check_version(version)
        model_kind = check_kind(kind)
        details = check_provenance(provenance)
        for label, price in (("input", price_per_1k_input), ("output", price_per_1k_output)):
            if price is not None and not price >= 0:
                raise InvalidInput(f"the {label} price per 1k tokens must be 0 or more")
        if signing_key is not None and signature is not None:
            raise InvalidInput("give a signing key or a signature, not both")
        source = Path(path)
        if not source.is_absolute():
            raise InvalidInput(
                f"artifact path {str(path)!r} is relative; give an absolute path on the "
                "kernel's machine"
            )
        if not await asyncio.to_thread(source.is_file):
            raise InvalidInput(f"artifact {source} does not exist or is not a file")
        if await self._exists(name, version):
            raise Conflict(_duplicate(name, version))
        target = self._settings.home / "models" / name / version / source.name if copy else None
        try:
            digest = await asyncio.to_thread(artifacts.hash_file, source, copy_to=target)
        except OSError as exc:
            raise InvalidInput(f"cannot read artifact {source}: {exc.strerror or exc}") from None
        try:
            body = artifacts.manifest(
                name, version, sha256=digest.sha256, size=digest.size, provenance=details
            )
            fingerprint: str | None = None
            if signing_key is not None:
                signature, fingerprint = await self._sign(Path(signing_key), body)
            elif signature is not None:
                fingerprint = await self._signer_of(body, signature)
            stored = target if target is not None else source
            row = ModelVersionRow(
                name=name,
                version=version,
                kind=model_kind.value,
                path=str(stored),
                size=digest.size,
                sha256=digest.sha256,
                signature=signature,
                key_fingerprint=fingerprint,
                provenance=details,
                price_per_1k_input=price_per_1k_input,
                price_per_1k_output=price_per_1k_output,
                stage=ModelStage.REGISTERED.value,
                canary_percent=None,
                registered_by=registered_by.subject,
                created_at=self._clock.now(),
                promoted_at=None,
            )
            record = _record(
                "model.registered",
                registered_by,
                f"{name}@{version}",
                args={"sha256": digest.sha256, "size": digest.size, "key": fingerprint},
                summary=f"registered {model_kind.value} {name}@{version} from {stored}",
            )
            audit = self._audit()

            def job(session: Session) -> ModelVersion:
                if version_row(session, name, version) is not None:
                    raise Conflict(_duplicate(name, version))
                session.add(row)
                session.flush()
                audit.append(session, record)
                return ModelVersion.from_row(row)

            return await self._db.write(job)
        except BaseException:
            if target is not None:
                await asyncio.to_thread(target.unlink, missing_ok=True)
            raise

    async def _exists(self, name: str, version: str) -> bool:
        async with self._db.read() as session:
            found = await session.scalar(
                select(ModelVersionRow.id).where(
                    ModelVersionRow.name == name, ModelVersionRow.version == version
                )
            )
        return found is not None

    async def _trusted_keys(self) -> dict[str, Ed25519PublicKey]:
        if self._trusted is None:
            self._trusted = await asyncio.to_thread(
                artifacts.load_trusted_keys, self._settings.model_trusted_keys
            )
        return self._trusted

    async def _sign(self, key_path: Path, body: bytes) -> tuple[str, str]:
        key = await asyncio.to_thread(artifacts.load_signing_key, key_path)
        fingerprint = artifacts.fingerprint(key.public_key())
        if fingerprint not in await self._trusted_keys():
            raise InvalidInput(
                f"the signing key {key_path} (fingerprint {fingerprint[:16]}…) is not trusted: "
                "add its public key's PEM file to KERNOS_MODEL_TRUSTED_KEYS and restart the "
                "kernel, or sign with a trusted key"
            )
        return artifacts.sign(key, body), fingerprint

    async def _signer_of(self, body: bytes, signature: str) -> str:
        for fingerprint, key in (await self._trusted_keys()).items():
            if artifacts.signature_valid(key, body, signature):
                return fingerprint
        raise InvalidInput(
            "the signature does not verify with any key in KERNOS_MODEL_TRUSTED_KEYS: it was "
            "made over other bytes or provenance, or by an untrusted key"
        )

    # -- Verifying --------------------------------------------------------------------------

    async def verify(
        self, name: str, version: str | None = None, *, by: Principal | None = None
    ) -> VerifyResult:
        """Re-hash the artifact and check its signature; a failure is audited (never raised).

        Without ``version``: the live version, else the newest. ``NotFound`` if unknown.
        """
        model = await self.get(name, version)
        result = await self._check(model)
        if not result.ok:
            record = _record(
                "model.verify_failed",
                by,
                model.ref,
                args={"problems": [p.value for p in result.problems]},
                summary=result.detail,
                decision="deny",
            )
            await self._append(record)
        return result

    async def _check(self, model: ModelVersion) -> VerifyResult:
        trusted = await self._trusted_keys()
        return await asyncio.to_thread(artifacts.verify_artifact, model, trusted)

    # -- Deploying --------------------------------------------------------------------------

    async def promote(
        self, ref: str, stage: DeploymentStage | str, *, by: Principal
    ) -> ModelVersion:
        """Move ``name@version`` to ``stage`` (``shadow``, ``canary:PCT``, ``live``, ``retired``).

        Deploying stages need a verified artifact and every content check to pass
        (``CheckFailed`` otherwise, audited, nothing changed). A new live version retires the
        previous one; a new canary retires the previous canary and needs a live version
        beside it (``Conflict``). Promoting to the stage a version is at changes nothing.
        """
        name, version = parse_ref(ref)
        if version is None:
            raise InvalidInput(f"{ref!r}: promote needs NAME@VERSION")
        target = stage if isinstance(stage, DeploymentStage) else DeploymentStage.parse(stage)
        model = await self.get(name, version)
        if target.stage in DEPLOYING:
            await self._admit(model, target, by=by, action="promote")
        now = self._clock.now()
        audit = self._audit()

        def job(session: Session) -> ModelVersion:
            row, changed = apply_promotion(session, name, version, target=target, by=by, now=now)
            if changed:
                summary = f"{ref} is now {target}"
                args = {"stage": str(target)}
                audit.append(
                    session,
                    _record(
                        "model.promoted", by, ref, args=args, summary=summary, decision="allow"
                    ),
                )
            return ModelVersion.from_row(row)

        try:
            return await self._db.write(job)
        finally:
            self._router.invalidate()

    async def rollback(self, name: str, *, by: Principal) -> ModelVersion:
        """Make the previous live version live again (verified first) and retire the current.

        Returns the version now live. ``NotFound`` for an unknown model, ``Conflict`` when no
        earlier live version is left, ``CheckFailed`` when that version fails verification.
        """
        check_model_name(name)
        await self.versions(name)
        async with self._db.read() as session:
            past = (await session.scalars(history_query(name))).all()
        models = {m.version: m for m in await self.list_models(name=name)}
        live = next((m.version for m in models.values() if m.stage is ModelStage.LIVE), None)
        previous = rollback_target(past, current=live, known=models)
        if previous is None:
            raise Conflict(
                f"{name} has no earlier live version to roll back to; promote a version with "
                f"`kernos models promote {name}@VERSION --stage live`"
            )
        model = models[previous]
        back_ref = model.ref
        await self._admit(model, None, by=by, action="rollback")
        now = self._clock.now()
        audit = self._audit()

        def job(session: Session) -> ModelVersion:
            back, retired = apply_rollback(session, name, expected=previous, by=by, now=now)
            was = ", ".join(retired) or "none"
            audit.append(
                session,
                _record(
                    "model.rolled_back",
                    by,
                    back_ref,
                    args={"retired": retired},
                    summary=f"{name} rolled back to {previous} (live was {was})",
                    decision="allow",
                ),
            )
            return ModelVersion.from_row(back)

        try:
            return await self._db.write(job)
        finally:
            self._router.invalidate()

    async def _admit(
        self,
        model: ModelVersion,
        target: DeploymentStage | None,
        *,
        by: Principal,
        action: str,
    ) -> None:
        """Verify (and for a promotion run the content checks); audit and raise on refusal."""
        result = await self._check(model)
        reason: str | None = None
        if not result.ok:
            reason = f"it failed verification ({', '.join(result.problems)}): {result.detail}"
        elif target is not None:
            for check in list(self._checks):
                try:
                    await check(model)
                except Exception as exc:  # a check refuses by raising anything
                    label = getattr(check, "__qualname__", None) or repr(check)
                    reason = f"the content check {label} refused it: {exc}"
                    break
        if reason is None:
            return
        where = f" to {target}" if target is not None else ""
        await self._append(
            _record(
                f"model.{action}_refused",
                by,
                model.ref,
                args={"stage": str(target) if target is not None else "live"},
                summary=reason,
                decision="deny",
            )
        )
        raise CheckFailed(f"{action} of {model.ref}{where} refused: {reason}; nothing changed")

    async def _append(self, record: AuditRecord) -> None:
        audit = self._audit()
        await self._db.write(lambda session: audit.append(session, record))

    async def _deployed(self, name: str) -> Deployed:
        found = await self.list_models(name=name)
        return Deployed(
            live=next((m.version for m in found if m.stage is ModelStage.LIVE), None),
            canary=next(
                ((m.version, m.canary_percent or 0) for m in found if m.stage is ModelStage.CANARY),
                None,
            ),
            shadows=tuple(m.version for m in found if m.stage is ModelStage.SHADOW),
        )

    # -- Traffic ----------------------------------------------------------------------------

    async def route(self, name: str, *, key: str) -> RouteChoice:
        """Which version of ``name`` answers the request ``key``, and which mirror it.

        A canary of P % answers the keys whose ``split_bucket`` is below ``100 * P``; the live
        version answers the rest. ``NotFound`` when the model has nothing live.
        """
        return await self._router.route(name, key=key)

    def record(
        self, name: str, version: str, *, latency: float, ok: bool, shadow: bool = False
    ) -> None:
        """Count one answer of ``name@version`` (seconds; ``ok`` False for an error)."""
        self.traffic.record(name, version, latency=latency, ok=ok, shadow=shadow)

    def stats(self, name: str) -> list[VersionStats]:
        """Per-version calls, errors and latency of ``name`` since the kernel started."""
        return self.traffic.stats(name)


def _unknown(name: str) -> str:
    return f"no model named {name!r}; `kernos models list` shows the registered ones"


def _duplicate(name: str, version: str) -> str:
    return f"{name}@{version} is already registered; register a new version instead"


def _record(
    event: str,
    by: Principal | None,
    target: str,
    *,
    args: dict[str, Any],
    summary: str,
    decision: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        event=event,
        tenant=by.tenant if by is not None else DEFAULT_TENANT,
        principal=by.subject if by is not None else KERNEL_PRINCIPAL,
        kind="model",
        target=target[:128],
        decision=decision,
        args=args,
        summary=summary,
    )
