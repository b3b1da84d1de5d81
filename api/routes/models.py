"""``/v1/models``: the model registry (register, list, verify, promote, roll back, export)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field

from kernos.api.deps import KernelDep, allowed
from kernos.kernel.identity import Principal
from kernos.kernel.model_export import MLSERVER_IMPLEMENTATION, export_model
from kernos.kernel.model_records import ModelKind, ModelVersion
from kernos.kernel.registry import ModelRegistry

router = APIRouter(prefix="/v1/models", tags=["models"])


async def get_models(kernel: KernelDep) -> ModelRegistry:
    """The kernel's model registry."""
    return kernel.models


ModelsDep = Annotated[ModelRegistry, Depends(get_models)]
"""The kernel's model registry."""

Reader = Annotated[Principal, allowed("model:*", "read")]
Admin = Annotated[Principal, allowed("model:*", "admin")]


class ModelRegister(BaseModel):
    """``POST /v1/models``: register an artifact that lies on the kernel's machine."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1, description="Absolute path of the artifact, on the kernel's machine."
    )
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=64)
    kind: ModelKind = ModelKind.OTHER
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="Where it came from (signed with the digest)."
    )
    price_per_1k_input: float | None = Field(default=None, ge=0)
    price_per_1k_output: float | None = Field(default=None, ge=0)
    signing_key: str | None = Field(
        default=None,
        description="Path of an Ed25519 private key (PEM) on the kernel's machine; the kernel "
        "signs the manifest with it. Its public key must be in KERNOS_MODEL_TRUSTED_KEYS.",
    )
    signature: str | None = Field(
        default=None,
        max_length=128,
        description="An Ed25519 signature (hex) made elsewhere over the manifest; it must "
        "verify with a trusted key.",
    )
    copy_artifact: bool = Field(
        default=False,
        alias="copy",
        description="Keep a copy under KERNOS_HOME/models/NAME/VERSION/.",
    )


class ModelPublic(BaseModel):
    """One model version."""

    name: str
    version: str
    kind: str
    path: str
    size: int
    sha256: str
    signed: bool
    signature: str | None
    key_fingerprint: str | None
    provenance: dict[str, Any]
    price_per_1k_input: float | None
    price_per_1k_output: float | None
    stage: str
    canary_percent: int | None
    deployment: str
    registered_by: str
    created_at: datetime
    promoted_at: datetime | None


class ModelList(BaseModel):
    """Model versions, by name then registration order."""

    data: list[ModelPublic]
    count: int


class VersionTraffic(BaseModel):
    """Calls, errors and latency (seconds) one version answered since the kernel started."""

    name: str
    version: str
    calls: int
    errors: int
    shadow_calls: int
    error_rate: float
    latency_mean: float
    latency_p50: float
    latency_p95: float


class ModelVersions(ModelList):
    """The versions of one model and their traffic figures."""

    traffic: list[VersionTraffic]


class VerifyRequest(BaseModel):
    """``POST /v1/models/{name}/verify``."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, description="Default: the live one, else newest.")


class VerifyPublic(BaseModel):
    """A verification: ``ok``, or the problems found (200 either way)."""

    name: str
    version: str
    ok: bool
    problems: list[str] = Field(
        description="missing_file, bytes_changed, bad_signature, untrusted_key"
    )
    detail: str
    expected_sha256: str
    actual_sha256: str | None
    expected_size: int
    actual_size: int | None
    signed: bool
    key_fingerprint: str | None


class PromoteRequest(BaseModel):
    """``POST /v1/models/{name}/promote``."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    stage: str = Field(description="shadow, canary:PCT (1-99), live or retired")


class ExportRequest(BaseModel):
    """``POST /v1/models/{name}/export``."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, description="Default: the live one, else newest.")
    repository: str = Field(
        min_length=1, description="Absolute path of the model repository, on the kernel's machine."
    )
    implementation: str = Field(
        default=MLSERVER_IMPLEMENTATION,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$",
        description="The MLServer runtime class model-settings.json names.",
    )


class ExportPublic(BaseModel):
    """What an export wrote."""

    name: str
    version: str
    sha256: str
    repository: str
    files: list[str]
    triton_ready: bool = Field(description="Triton loads only numeric version folders.")


def _public(model: ModelVersion) -> ModelPublic:
    return ModelPublic.model_validate(model.as_dict())


@router.get("", response_model=ModelList, summary="List model versions")
async def list_models(
    principal: Reader,
    models: ModelsDep,
    name: Annotated[str | None, Query(max_length=128, description="Only this model.")] = None,
) -> ModelList:
    """Every registered version (of ``name`` only, if given)."""
    found = await models.list_models(name=name)
    return ModelList(data=[_public(m) for m in found], count=len(found))


@router.post(
    "",
    response_model=ModelPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Register a model version",
)
async def register_model(body: ModelRegister, principal: Admin, models: ModelsDep) -> ModelPublic:
    """Hash (and optionally sign and copy) an artifact on the kernel's machine and register it.

    400 for a bad name, an unreadable file or key, an untrusted key or a wrong signature;
    409 when the version exists.
    """
    model = await models.register(
        body.path,
        name=body.name,
        version=body.version,
        registered_by=principal,
        kind=body.kind,
        provenance=body.provenance,
        price_per_1k_input=body.price_per_1k_input,
        price_per_1k_output=body.price_per_1k_output,
        signing_key=body.signing_key,
        signature=body.signature,
        copy=body.copy_artifact,
    )
    return _public(model)


@router.get("/{name}", response_model=ModelVersions, summary="A model's versions")
async def model_versions(name: str, principal: Reader, models: ModelsDep) -> ModelVersions:
    """The versions of ``name``, oldest first, with their traffic figures (404 if unknown)."""
    found = await models.versions(name)
    traffic = [VersionTraffic.model_validate(s.as_dict()) for s in models.stats(name)]
    return ModelVersions(data=[_public(m) for m in found], count=len(found), traffic=traffic)


@router.post("/{name}/verify", response_model=VerifyPublic, summary="Verify a model version")
async def verify_model(
    name: str, principal: Reader, models: ModelsDep, body: VerifyRequest | None = None
) -> VerifyPublic:
    """Re-hash the artifact and check its signature: 200 with ``ok`` false when damaged."""
    result = await models.verify(name, body.version if body else None, by=principal)
    return VerifyPublic.model_validate(result.as_dict())


@router.post("/{name}/promote", response_model=ModelPublic, summary="Promote a model version")
async def promote_model(
    name: str, body: PromoteRequest, principal: Admin, models: ModelsDep
) -> ModelPublic:
    """Move a version to shadow, canary:PCT, live or retired.

    409 when it fails verification or a content check (nothing changes), or for a canary
    without a live version; 404 for an unknown model or version.
    """
    model = await models.promote(f"{name}@{body.version}", body.stage, by=principal)
    return _public(model)


@router.post("/{name}/rollback", response_model=ModelPublic, summary="Roll back a model")
async def rollback_model(name: str, principal: Admin, models: ModelsDep) -> ModelPublic:
    """Make the previous live version live again (verified first); returns it.

    409 when there is nothing to roll back to or it fails verification; 404 if unknown.
    """
    return _public(await models.rollback(name, by=principal))


@router.post("/{name}/export", response_model=ExportPublic, summary="Export a model version")
async def export_model_version(
    name: str, body: ExportRequest, principal: Admin, models: ModelsDep
) -> ExportPublic:
    """Write a verified version into a KServe v2 model repository (Triton ``config.pbtxt``,
    MLServer ``model-settings.json``).

    409 when it fails verification (audited; nothing written); 404 if unknown; 400 for a
    relative path, a model that is not ONNX, or a repository that cannot be written.
    """
    result = await export_model(
        models,
        name,
        body.version,
        repository=body.repository,
        by=principal,
        implementation=body.implementation,
    )
    return ExportPublic.model_validate(result.as_dict())
