"""The local admin token, and the shape every bearer-token authenticator has.

On first start the kernel writes a random token to ``KERNOS_HOME/admin.token`` (mode 0600,
created that way, never world-readable even for a moment); later starts reuse it. The kernel
keeps only its SHA-256 and compares digests in constant time. The token stands for the local
admin principal; the policy layer adds API keys as further ``Authenticator``s, tried in order.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from kernos.kernel.errors import StorageError
from kernos.kernel.identity import DEFAULT_TENANT, LOCAL_ADMIN, Principal, PrincipalKind

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105  # a file name, not a secret
"""Name of the admin token file inside ``KERNOS_HOME``."""

LOCAL_ADMIN_PRINCIPAL = Principal(
    tenant=DEFAULT_TENANT, name=LOCAL_ADMIN, kind=PrincipalKind.PERSON
)
"""Who the admin token authenticates as."""


@runtime_checkable
class Authenticator(Protocol):
    """Turns a presented bearer token into a principal."""

    async def authenticate(self, token: str) -> Principal | None:
        """The principal ``token`` stands for, or ``None`` if this authenticator doesn't know it.

        Must compare secrets in constant time and never log the token.
        """
        ...


def admin_token_path(home: Path) -> Path:
    """Where the admin token of ``home`` lives."""
    return home / ADMIN_TOKEN_FILE


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class LocalAdminToken:
    """The SHA-256 of the local admin token (the token itself is not kept)."""

    digest: bytes
    principal: Principal = LOCAL_ADMIN_PRINCIPAL

    def __repr__(self) -> str:
        return f"LocalAdminToken(principal={self.principal.subject!r})"

    def matches(self, token: str) -> bool:
        """Whether ``token`` is the admin token (constant-time comparison)."""
        return hmac.compare_digest(_digest(token), self.digest)

    async def authenticate(self, token: str) -> Principal | None:
        """The local admin principal if ``token`` is the admin token."""
        return self.principal if self.matches(token) else None


def read_admin_token(home: Path) -> str | None:
    """The admin token of ``home``, or ``None`` if there is none (no kernel started there yet)."""
    try:
        token = admin_token_path(home).read_text(encoding="ascii").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read {admin_token_path(home)}: {exc}") from None
    return token or None


def ensure_admin_token(home: Path) -> LocalAdminToken:
    """Create ``home/admin.token`` (mode 0600) if it is missing or empty; return its digest.

    An existing file readable by others is narrowed to 0600 with a warning.
    """
    path = admin_token_path(home)
    try:
        existing = read_admin_token(home)
        if existing is not None:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                log.warning(
                    "admin token file %s was readable by others (mode %o); narrowed to 0600",
                    path,
                    mode,
                )
                path.chmod(0o600)
            return LocalAdminToken(_digest(existing))
        token = secrets.token_urlsafe(32)
        write_private(path, token)
    except OSError as exc:
        raise StorageError(
            f"cannot create the admin token {path}: {exc.strerror or exc}; "
            "check that KERNOS_HOME is writable"
        ) from None
    log.info("created the local admin token", extra={"path": str(path)})
    return LocalAdminToken(_digest(token))


def write_private(path: Path, token: str) -> None:
    """Write a secret (mode 0600): a reader sees no file or all of it, never other modes.

    The temporary file is created with O_EXCL and mode 0600 (the umask can only narrow it),
    then renamed over the final name, so a crash never leaves a half-written token.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


__all__ = [
    "ADMIN_TOKEN_FILE",
    "LOCAL_ADMIN_PRINCIPAL",
    "Authenticator",
    "LocalAdminToken",
    "admin_token_path",
    "ensure_admin_token",
    "read_admin_token",
    "write_private",
]
