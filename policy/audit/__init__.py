"""The tamper-evident audit log: a hash chain over canonical JSON records, signed checkpoints.

* ``HashChainAuditSink``: the kernel's ``AuditSink``, chaining records on the writer's thread.
* ``AuditLog``: tail, export, checkpoint and verify for a running kernel (the API uses it).
* ``verify_offline``: verify a database read-only, without a kernel (for an auditor).
* ``generate_key``: a new Ed25519 signing key for checkpoints.
"""

from __future__ import annotations

from kernos.policy.audit.canonical import GENESIS
from kernos.policy.audit.service import AuditLog, CheckpointResult
from kernos.policy.audit.signed import DamageKind
from kernos.policy.audit.signing import generate_key
from kernos.policy.audit.sink import HashChainAuditSink
from kernos.policy.audit.verify import VerifyResult, verify_offline

__all__ = [
    "GENESIS",
    "AuditLog",
    "CheckpointResult",
    "DamageKind",
    "HashChainAuditSink",
    "VerifyResult",
    "generate_key",
    "verify_offline",
]
