"""What the model registry hands out: versions, deployment stages, verification results."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from kernos.kernel.errors import InvalidInput
from kernos.kernel.storage.models import ModelVersionRow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class ModelKind(StrEnum):
    """What an artifact is."""

    LLM = "llm"
    ONNX = "onnx"
    OTHER = "other"


class ModelStage(StrEnum):
    """Where a version is in its deployment."""

    REGISTERED = "registered"
    """Known and verified at registration, serving nothing."""
    SHADOW = "shadow"
    """Gets a mirrored copy of the live traffic; its answers are recorded, never returned."""
    CANARY = "canary"
    """Answers a fixed share (1-99 %) of the requests, chosen by a stable hash of their key."""
    LIVE = "live"
    """Answers the rest; one per model name."""
    RETIRED = "retired"
    """Serves nothing; a previous live version stays a rollback target."""


DEPLOYING = frozenset({ModelStage.SHADOW, ModelStage.CANARY, ModelStage.LIVE})
"""Stages that put a version in front of traffic: reaching one needs verification and the
content checks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentStage:
    """A stage to promote to, with the canary's percentage."""

    stage: ModelStage
    canary_percent: int | None = None

    @classmethod
    def parse(cls, text: str) -> DeploymentStage:
        """``shadow``, ``canary:PCT`` (1-99), ``live`` or ``retired``; ``InvalidInput`` else."""
        head, _, tail = text.strip().lower().partition(":")
        if head == ModelStage.CANARY:
            if not tail.isdigit() or not 1 <= int(tail) <= 99:
                raise InvalidInput(
                    f"stage {text!r}: a canary needs a percentage from 1 to 99, as canary:10"
                )
            return cls(stage=ModelStage.CANARY, canary_percent=int(tail))
        if tail or head not in (ModelStage.SHADOW, ModelStage.LIVE, ModelStage.RETIRED):
            raise InvalidInput(
                f"unknown stage {text!r}: use shadow, canary:PCT (1-99), live or retired"
            )
        return cls(stage=ModelStage(head))

    def __str__(self) -> str:
        if self.stage is ModelStage.CANARY:
            return f"canary:{self.canary_percent}"
        return self.stage.value


def check_model_name(name: str) -> str:
    """Validate a model name (1-128 of letters, digits, ``.``, ``_``, ``-``)."""
    if not _NAME.match(name):
        raise InvalidInput(
            f"model name {name!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_version(version: str) -> str:
    """Validate a version (1-64 of letters, digits, ``.``, ``_``, ``+``, ``-``)."""
    if not _VERSION.match(version):
        raise InvalidInput(
            f"version {version!r} is invalid: use 1-64 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit"
        )
    return version


def check_kind(kind: ModelKind | str) -> ModelKind:
    """The kind named by ``kind``; ``InvalidInput`` naming the choices."""
    try:
        return ModelKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in ModelKind)
        raise InvalidInput(f"unknown model kind {kind!r}; use one of {choices}") from None


def check_provenance(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``provenance``; ``InvalidInput`` unless it is plain JSON."""
    details = dict(provenance or {})
    try:
        json.dumps(details, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"provenance must be plain JSON ({exc})") from None
    return details


def parse_ref(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@VERSION`` split into name and version (``None`` if absent)."""
    name, at, version = text.strip().partition("@")
    check_model_name(name)
    if at:
        check_version(version)
        return name, version
    return name, None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """One registered version of a model, as the registry hands it out."""

    name: str
    version: str
    kind: ModelKind
    path: str
    size: int
    sha256: str
    signature: str | None
    key_fingerprint: str | None
    provenance: dict[str, Any]
    price_per_1k_input: float | None
    price_per_1k_output: float | None
    stage: ModelStage
    canary_percent: int | None
    registered_by: str
    created_at: datetime
    promoted_at: datetime | None

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def deployment(self) -> str:
        """The stage as written on the command line (``canary:10``, ``live``, ...)."""
        if self.stage is ModelStage.CANARY:
            return f"canary:{self.canary_percent}"
        return self.stage.value

    def cost(self, *, input_tokens: int, output_tokens: int) -> float | None:
        """What a call costs at this version's prices (``None`` when it has none)."""
        if self.price_per_1k_input is None and self.price_per_1k_output is None:
            return None
        return (
            input_tokens * (self.price_per_1k_input or 0.0)
            + output_tokens * (self.price_per_1k_output or 0.0)
        ) / 1000

    @classmethod
    def from_row(cls, row: ModelVersionRow) -> ModelVersion:
        """The record of a database row."""
        return cls(
            name=row.name,
            version=row.version,
            kind=ModelKind(row.kind),
            path=row.path,
            size=row.size,
            sha256=row.sha256,
            signature=row.signature,
            key_fingerprint=row.key_fingerprint,
            provenance=dict(row.provenance or {}),
            price_per_1k_input=row.price_per_1k_input,
            price_per_1k_output=row.price_per_1k_output,
            stage=ModelStage(row.stage),
            canary_percent=row.canary_percent,
            registered_by=row.registered_by,
            created_at=row.created_at,
            promoted_at=row.promoted_at,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as datetimes)."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind.value,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "signed": self.signature is not None,
            "signature": self.signature,
            "key_fingerprint": self.key_fingerprint,
            "provenance": self.provenance,
            "price_per_1k_input": self.price_per_1k_input,
            "price_per_1k_output": self.price_per_1k_output,
            "stage": self.stage.value,
            "canary_percent": self.canary_percent,
            "deployment": self.deployment,
            "registered_by": self.registered_by,
            "created_at": self.created_at,
            "promoted_at": self.promoted_at,
        }


class VerifyProblem(StrEnum):
    """What verification found wrong with a version."""

    MISSING_FILE = "missing_file"
    """The artifact is gone or unreadable."""
    BYTES_CHANGED = "bytes_changed"
    """The artifact no longer hashes to the registered digest (or size)."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not match the record (name, version, digest, size, provenance)."""
    UNTRUSTED_KEY = "untrusted_key"
    """The signing key is not among ``model_trusted_keys`` (any more)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The outcome of verifying one version: ``ok``, or the problems found."""

    name: str
    version: str
    expected_sha256: str
    actual_sha256: str | None
    expected_size: int
    actual_size: int | None
    signed: bool
    key_fingerprint: str | None
    problems: tuple[VerifyProblem, ...] = field(default=())
    detail: str = ""
    """What was found, in words (what failed and what to do)."""

    @property
    def ok(self) -> bool:
        """Whether the bytes and the signature (if any) still match."""
        return not self.problems

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "ok": self.ok,
            "problems": [p.value for p in self.problems],
            "detail": self.detail,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
            "signed": self.signed,
            "key_fingerprint": self.key_fingerprint,
        }
