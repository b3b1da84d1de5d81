"""The ``KernosError`` hierarchy.

Every error a user can see is a ``KernosError`` with a stable ``code`` (the API's problem
``type`` suffix, the CLI's machine-readable reason), an ``exit_status`` for the CLI and an
``http_status`` for the API. Messages say what happened and what to do next. The table of
codes is documented in ``docs/errors.md``; a test keeps both in step. Control-flow signals
(interrupts, cancellation) are not errors and never derive from this class.
"""

from __future__ import annotations

from typing import ClassVar

# CLI exit statuses, the same for every command (ARCHITECTURE §4).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DENIED = 3
EXIT_UNAVAILABLE = 4


class KernosError(Exception):
    """Base of every error Kernos reports to a user."""

    code: ClassVar[str] = "kernos_error"
    exit_status: ClassVar[int] = EXIT_CHECK_FAILED
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]  # an instance may refine its class's code

    def __str__(self) -> str:
        return self.message


class ConfigError(KernosError):
    """A setting, ``kernos.toml`` or environment variable is missing, unreadable or invalid."""

    code = "config_invalid"
    exit_status = EXIT_BAD_INPUT
    http_status = 500


class InvalidInput(KernosError):
    """A request or command argument is malformed."""

    code = "invalid_input"
    exit_status = EXIT_BAD_INPUT
    http_status = 400


class NotFound(KernosError):
    """The named object does not exist (or is not visible to the caller's tenant)."""

    code = "not_found"
    exit_status = EXIT_BAD_INPUT
    http_status = 404


class Conflict(KernosError):
    """The object already exists, or its state does not allow the operation."""

    code = "conflict"
    exit_status = EXIT_BAD_INPUT
    http_status = 409


class PolicyDenied(KernosError):
    """The policy does not allow this principal to do this."""

    code = "policy_denied"
    exit_status = EXIT_DENIED
    http_status = 403


class ApprovalDenied(PolicyDenied):
    """A human denied the action a syscall proposed."""

    code = "approval_denied"


class Unauthenticated(PolicyDenied):
    """The credential is missing, unknown, expired or revoked."""

    code = "unauthenticated"
    http_status = 401


class PayloadTooLarge(InvalidInput):
    """A request carries more than the API accepts at once (split it)."""

    code = "payload_too_large"
    http_status = 413


class RateLimited(KernosError):
    """Too many requests for now; ``retry_after`` says how many seconds to wait."""

    code = "rate_limited"
    exit_status = EXIT_UNAVAILABLE
    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendOverloaded(RateLimited):
    """An LLM backend's wait queue is full (backpressure): retry after ``retry_after`` seconds,
    or send less at once."""

    code = "backend_overloaded"


class BudgetExceeded(KernosError):
    """A process or tenant has used up a budget (tokens, tool calls, wall time, cost)."""

    code = "budget_exceeded"
    exit_status = EXIT_DENIED
    http_status = 429


class KernelUnavailable(KernosError):
    """No kernel can serve the request: none is running, or it cannot start."""

    code = "kernel_unavailable"
    exit_status = EXIT_UNAVAILABLE
    http_status = 503


class LeaseHeld(KernelUnavailable):
    """Another kernel holds the exclusive lease on this database."""

    code = "lease_held"


class BackendUnavailable(KernosError):
    """An outside system (LLM server, tool backend, broker) cannot be reached."""

    code = "backend_unavailable"
    exit_status = EXIT_CHECK_FAILED
    http_status = 503


class BackendError(BackendUnavailable):
    """A backend failed a request. ``retryable`` says whether trying again may succeed
    (connection refused, timeouts, 429 and 5xx: yes; 4xx: no)."""

    code = "backend_error"
    exit_status = EXIT_CHECK_FAILED
    http_status = 503

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class CheckFailed(KernosError):
    """A check ran and found a problem (for example an audit verify)."""

    code = "check_failed"
    exit_status = EXIT_CHECK_FAILED
    http_status = 409


class StorageError(KernosError):
    """The database could not be opened, migrated or written."""

    code = "storage_error"
    exit_status = EXIT_CHECK_FAILED
    http_status = 503


class LeaseLost(KernelUnavailable):
    """The running kernel lost its database lease and stopped (another kernel may start)."""

    code = "lease_lost"


class StorageUnavailable(KernelUnavailable):
    """The kernel's database cannot be reached, so no kernel can run on it."""

    code = "storage_unavailable"


class SchemaTooNew(StorageError):
    """The database was migrated by a newer Kernos than this one."""

    code = "schema_too_new"
    exit_status = EXIT_BAD_INPUT


class PluginError(KernosError):
    """A plugin could not be loaded or failed in a hook."""

    code = "plugin_error"
    exit_status = EXIT_CHECK_FAILED


class EssentialPluginError(PluginError):
    """An essential plugin (policy, audit, storage stages) failed: the kernel cannot start."""

    code = "essential_plugin_failed"


class DuplicateRegistration(PluginError):
    """Two plugins registered the same tool, agent or command name."""

    code = "duplicate_registration"


def all_error_classes() -> list[type[KernosError]]:
    """Every ``KernosError`` subclass defined so far, base first (for docs and meta-tests)."""
    seen: list[type[KernosError]] = [KernosError]
    queue: list[type[KernosError]] = [KernosError]
    while queue:
        for sub in queue.pop(0).__subclasses__():
            if sub not in seen:
                seen.append(sub)
                queue.append(sub)
    return seen
