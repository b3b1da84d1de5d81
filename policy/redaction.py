"""Redaction of secrets and personal data, with field-level tokenization.

Everything that reaches an LLM backend or the audit log passes a ``Redactor`` first. It walks
a JSON-like value (str, and dicts, lists and tuples of them, nested), replaces what its
detectors find with a token such as ``[EMAIL:tok_3f9a…]``, and replaces the whole value under
secret-looking keys (``password``, ``api_key``, ``authorization``, …) with a ``[SECRET:…]``
token. Tokens are deterministic per (tenant, kind, original) — an HMAC keyed by the vault key
(see ``kernos.policy.vault``) — so the same value maps to the same token within a tenant and
an LLM can still tell two people apart without seeing either.

The redactor is pure CPU and never writes: it returns the redacted value and the vault
entries for what it replaced (originals, encrypted); the caller stores them in its own write
job, next to the record that carries the tokens::

    result = redactor.redact(args, tenant=tenant)
    await db.write(lambda s: (vault.store(s, result.entries), audit.append(s, record)))

Detectors are pluggable: a ``DetectorRegistry`` starts with the built-ins
(``kernos.policy.detectors``), and plugins add theirs through the ``register_redactors`` hook.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kernos.kernel.errors import DuplicateRegistration, InvalidInput, PluginError
from kernos.policy.detectors import Detector, PatternDetector, Span, builtin_detectors
from kernos.policy.vault import PLACEHOLDER_PATTERN, VaultEntry, VaultKey

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "Detector",
    "DetectorRegistry",
    "PatternDetector",
    "Redaction",
    "Redactor",
    "Span",
]

DEFAULT_SECRET_FIELDS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "cookie",
    "credential",
    "credentials",
)
"""Key names whose values are replaced whole. A key matches when, lowercased and stripped of
everything but letters and digits, it is one of these or ends with one (``X-Api-Key``,
``db_password``, ``refresh_token``; not ``max_tokens`` or ``token_count``)."""

SECRET_KIND = "SECRET"  # noqa: S105  # a label, not a secret
"""The kind of a value replaced whole under a secret key."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,62}$")
_KIND = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_NORMALIZE = re.compile(r"[^a-z0-9]")
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Redaction:
    """A redacted value and the vault entries to store with it (insert-if-absent)."""

    value: Any
    entries: tuple[VaultEntry, ...]

    @property
    def found(self) -> bool:
        """Whether anything was replaced by a new token in this call."""
        return bool(self.entries)


class DetectorRegistry:
    """The detectors redaction uses: the built-ins plus those plugins register.

    Its ``register`` method is the callback the ``register_redactors`` hook hands plugins.
    """

    def __init__(self, detectors: Iterable[Detector] = ()) -> None:
        self._detectors: dict[str, Detector] = {}
        for detector in detectors:
            self.register(detector)

    @classmethod
    def with_builtins(cls) -> DetectorRegistry:
        """A registry holding the built-in detectors (``builtin_detectors()``)."""
        return cls(builtin_detectors())

    def register(self, detector: Detector, *, replace: bool = False) -> None:
        """Add ``detector``; ``replace=True`` swaps out a registered one of the same name.

        Raises ``InvalidInput`` for something that is not a ``Detector`` or has a bad name
        or kind, and ``DuplicateRegistration`` for a taken name without ``replace``.
        """
        if not isinstance(detector, Detector):
            raise InvalidInput(
                f"{detector!r} is not a redaction Detector (subclass "
                "kernos.policy.redaction.Detector)"
            )
        name = getattr(detector, "name", None)
        kind = getattr(detector, "kind", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                f"redaction detector name {name!r} is invalid: use 1-63 lowercase letters, "
                "digits, '.', '_' or '-'"
            )
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise InvalidInput(
                f"redaction detector {name!r} has kind {kind!r}: use 1-32 uppercase letters, "
                "digits or '_', starting with a letter (it labels tokens like [EMAIL:tok_…])"
            )
        if name in self._detectors and not replace:
            raise DuplicateRegistration(
                f"a redaction detector named {name!r} is already registered; pick another "
                "name, or pass replace=True to replace it"
            )
        self._detectors[name] = detector

    @property
    def names(self) -> list[str]:
        """Registered detector names, in registration order."""
        return list(self._detectors)

    def __iter__(self) -> Iterator[Detector]:
        return iter(list(self._detectors.values()))

    def __len__(self) -> int:
        return len(self._detectors)

    def __contains__(self, name: object) -> bool:
        return name in self._detectors

    def redactor(self, key: VaultKey, **options: Any) -> Redactor:
        """A redactor over the detectors registered now (later registrations don't reach it)."""
        return Redactor(list(self), key, **options)


class _Run:
    """One ``redact`` call: its tenant and the entries found so far (by token)."""

    __slots__ = ("entries", "tenant")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.entries: dict[str, VaultEntry] = {}


class Redactor:
    """Replaces secrets and personal data in JSON-like values with vault tokens.

    Pure CPU, thread-safe, never writes. ``min_length``: shorter strings are not scanned
    (nothing a built-in finds is shorter than 6 characters).
    """

    def __init__(
        self,
        detectors: Sequence[Detector],
        key: VaultKey,
        *,
        secret_fields: Iterable[str] = DEFAULT_SECRET_FIELDS,
        min_length: int = 6,
    ) -> None:
        self._detectors = tuple(detectors)
        self._screened = tuple((d.min_length, d) for d in self._detectors)
        self._vault_key = key
        # Sealed entries of recent values: the same address in every record costs no HMAC
        # and no encryption after the first time (bounded; the kernel holds the key anyway).
        self._sealed: dict[tuple[str, str, str], VaultEntry] = {}
        self._secret_fields = tuple(_normalize(name) for name in secret_fields)
        self._min_length = min_length
        self._secret_key_cache: dict[str, bool] = {}
        self._clean_keys: set[str] = set()

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """The detectors this redactor runs, in order."""
        return self._detectors

    def redact(self, value: Any, *, tenant: str) -> Redaction:
        """Redact ``value`` (str, or nested dicts/lists/tuples) for ``tenant``.

        Returns a new value where anything changed (the input is never modified; parts with
        nothing to redact are shared, not copied) and the entries to store in the vault.
        """
        run = _Run(tenant)
        redacted = self._walk(value, run)
        return Redaction(redacted, tuple(run.entries.values()))

    def is_secret_field(self, key: str) -> bool:
        """Whether a value under ``key`` is replaced whole."""
        cached = self._secret_key_cache.get(key)
        if cached is None:
            normal = _normalize(key)
            cached = any(normal.endswith(name) for name in self._secret_fields)
            if len(self._secret_key_cache) >= _CACHE_LIMIT:
                self._secret_key_cache.clear()
            self._secret_key_cache[key] = cached
        return cached

    def spans(self, text: str) -> list[Span]:
        """What the detectors find in ``text``, overlaps resolved (earliest, then longest)."""
        found: list[Span] = []
        size = len(text)
        for min_length, detector in self._screened:
            if min_length > size:
                continue
            try:
                spans = detector.find(text)
            except Exception as exc:
                # Fail closed, and never echo the text (the message could carry it).
                raise PluginError(
                    f"redaction detector {detector.name!r} failed ({type(exc).__name__}); "
                    "nothing was redacted or sent"
                ) from None
            for span in spans:
                if not (0 <= span.start < span.end <= len(text)):
                    raise PluginError(
                        f"redaction detector {detector.name!r} returned a span "
                        f"({span.start}, {span.end}) outside a text of {len(text)} characters"
                    )
            found.extend(spans)
        if len(found) < 2:
            return found
        found.sort(key=lambda s: (s.start, -s.end))
        kept = [found[0]]
        for span in found[1:]:
            if span.start >= kept[-1].end:
                kept.append(span)
        return kept

    # -- Walking ----------------------------------------------------------------------------

    def _walk(self, value: Any, run: _Run) -> Any:
        kind = type(value)
        if kind is str:
            return self._text(value, run)
        if kind is dict:
            return self._mapping(value, run)
        if kind is list or kind is tuple:
            items = [self._walk(item, run) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items if kind is list else tuple(items)
        if kind is int and abs(value) >= 10**12:
            # Card numbers arrive as integers too.
            text = str(value)
            spans = self.spans(text)
            if spans and spans[0].start == 0 and spans[0].end == len(text):
                return self._token(text, spans[0].kind, run)
        return value

    def _mapping(self, value: dict[Any, Any], run: _Run) -> dict[Any, Any]:
        changed = False
        items = []
        for key, item in value.items():
            if type(key) is str:
                new_item = (
                    self._whole(item, run) if self.is_secret_field(key) else self._walk(item, run)
                )
                new_key = self._key(key, run)
            else:
                new_item, new_key = self._walk(item, run), key
            changed = changed or new_item is not item or new_key is not key
            items.append((new_key, new_item))
        return dict(items) if changed else value

    def _key(self, key: str, run: _Run) -> str:
        if len(key) < self._min_length or key in self._clean_keys:
            return key
        new = self._text(key, run)
        if new is key:
            if len(self._clean_keys) >= _CACHE_LIMIT:
                self._clean_keys.clear()
            self._clean_keys.add(key)
        return new

    def _whole(self, value: Any, run: _Run) -> Any:
        if value is None or type(value) is bool:
            return value
        if type(value) is str:
            if not value or PLACEHOLDER_PATTERN.fullmatch(value):
                return value
            return self._token(value, SECRET_KIND, run)
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
        return self._token(text, SECRET_KIND, run)

    def _text(self, text: str, run: _Run) -> str:
        if len(text) < self._min_length:
            return text
        spans = self.spans(text)
        if not spans:
            return text
        parts = []
        last = 0
        for span in spans:
            parts.append(text[last : span.start])
            parts.append(self._token(text[span.start : span.end], span.kind, run))
            last = span.end
        parts.append(text[last:])
        return "".join(parts)

    def _token(self, original: str, kind: str, run: _Run) -> str:
        cache_key = (run.tenant, kind, original)
        entry = self._sealed.get(cache_key)
        if entry is None:
            entry = self._vault_key.seal(original, tenant=run.tenant, kind=kind)
            if len(self._sealed) >= _CACHE_LIMIT:
                self._sealed.clear()
            self._sealed[cache_key] = entry
        run.entries[entry.token] = entry
        return f"[{kind}:{entry.token}]"


def _normalize(name: str) -> str:
    return _NORMALIZE.sub("", name.lower())
