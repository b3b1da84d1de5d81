"""The edge agent's own errors: it cannot use the kernel's ``KernosError`` hierarchy.

``kernos-edge`` installs without the kernel, so its modules raise these plain ``ValueError``
subclasses; kernel-side code that validates the same things (``kernos.plugins.sensors``)
translates them into ``InvalidInput`` / ``ConfigError``.
"""

from __future__ import annotations

__all__ = ["EdgeConfigError", "EdgeError", "EdgeInputError"]


class EdgeError(ValueError):
    """Base of the edge agent's errors."""


class EdgeConfigError(EdgeError):
    """A parameter set or option makes no sense (the simulated city's, the filter's)."""


class EdgeInputError(EdgeError):
    """An input is invalid: a malformed reading, an id or an hour out of range."""
