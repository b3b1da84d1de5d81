"""Detectors of secrets and personal data in text, for redaction.

A ``Detector`` finds ``Span``s in a string; the redactor replaces them with vault tokens.
``PatternDetector`` covers the common case (a regular expression, an optional cheap substring
pre-check and an optional validation of each match); plugins register their own detectors
through the ``register_redactors`` hook. The built-ins (``builtin_detectors()``):

* ``email``;
* ``phone``: E.164 (``+`` and 8-15 digits, separators allowed), North American
  ``(415) 555-2671`` / ``415-555-2671`` / ``415.555.2671`` / ``415 555 2671``, and
  trunk-prefixed national numbers (``020 7946 0958``, ``06 12 34 56 78``, ``030/1234567``)
  with one kind of separator and 9-12 digits. Plain digit runs (ids, pids), ISO dates and
  times, version numbers and decimals are not phone numbers;
* keys and tokens: OpenAI ``sk-…``, Anthropic ``sk-ant-…``, GitHub ``ghp_…`` /
  ``github_pat_…``, AWS ``AKIA…`` / ``ASIA…``, Slack ``xox?-…``, JWTs, ``Bearer …`` and
  ``Authorization: Basic …`` credentials, PEM private key blocks, Kernos API keys
  (``kn_`` + 43 URL-safe base64 characters), passwords in URLs (``scheme://user:pw@``),
  and values after key names such as
  ``password=``, ``"api_key": "…"`` (any password; other names only if high-entropy);
* ``card``: 13-19 digits, optionally grouped by spaces or dashes, issuer digit 2-6, and
  Luhn-valid.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A found value: ``text[start:end]``, of a kind such as ``EMAIL`` (the token's label)."""

    start: int
    end: int
    kind: str


class Detector(ABC):
    """Finds one kind of secret or personal data in text.

    ``name`` is unique among registered detectors (``[a-z0-9_.-]``); ``kind`` is the label
    of the tokens its finds become (``[A-Z][A-Z0-9_]*``, e.g. ``EMAIL``). ``find`` must be
    pure and thread-safe: the redactor calls it on hot paths, from any thread.
    """

    name: str
    kind: str
    min_length: int = 1
    """Shortest text this detector can find anything in (shorter texts skip it)."""

    @abstractmethod
    def find(self, text: str) -> list[Span]:
        """Every occurrence in ``text``, as spans within it (overlaps are resolved later)."""


Validator = Callable[["re.Match[str]"], bool]


class PatternDetector(Detector):
    """A detector from a regular expression.

    ``hints``: substrings of which at least one must occur in the text before the
    expression runs at all (a cheap pre-check). ``group``: the group that is the value (the
    rest of the match is context, such as ``Bearer ``). ``validate``: a check each match
    must pass (a checksum, an entropy threshold). ``min_length``: the shortest text a match
    fits in (shorter texts are skipped without running anything).

    ``anchor`` (a literal, or a cheap expression) makes long texts fast: the full pattern
    then runs only within ``reach`` = (before, after) characters around each occurrence of
    the anchor, instead of at every position (Python's ``re`` costs about 10 ns a character
    for a pattern without a literal prefix). Every match must contain or touch an anchor.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        pattern: str | re.Pattern[str],
        hints: Sequence[str] = (),
        group: int | str = 0,
        validate: Validator | None = None,
        anchor: str | re.Pattern[str] | None = None,
        reach: tuple[int, int] = (64, 64),
        min_length: int = 1,
    ) -> None:
        self.name = name
        self.kind = kind
        self.min_length = min_length
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.hints = tuple(hints)
        self.group = group
        self.validate = validate
        self.anchor = anchor
        self.reach = reach

    def find(self, text: str) -> list[Span]:
        """Matches of the pattern that pass the hints and the validation."""
        for hint in self.hints:
            if hint in text:
                break
        else:
            if self.hints:
                return []
        spans = []
        for match in self._matches(text):
            if self.validate is not None and not self.validate(match):
                continue
            start, end = match.span(self.group)
            if end > start:
                spans.append(Span(start, end, self.kind))
        return spans

    def _matches(self, text: str) -> Iterator[re.Match[str]]:
        if self.anchor is None:
            yield from self.pattern.finditer(text)
            return
        size = len(text)
        last_end = 0
        for window_start, window_end in self._windows(text):
            for found in self.pattern.finditer(text, window_start, window_end):
                match: re.Match[str] | None = found
                if found.end() == window_end < size:
                    # The window's end hid what follows from the pattern's lookahead.
                    match = self.pattern.match(text, found.start())
                if match is not None and match.start() >= last_end:
                    last_end = match.end()
                    yield match

    def _windows(self, text: str) -> list[tuple[int, int]]:
        before, after = self.reach
        size = len(text)
        windows: list[tuple[int, int]] = []
        anchor = self.anchor
        if isinstance(anchor, str):
            bounds = []
            at = text.find(anchor)
            while at >= 0:
                bounds.append((at, at + len(anchor)))
                at = text.find(anchor, at + 1)
        else:
            assert anchor is not None
            bounds = [m.span() for m in anchor.finditer(text)]
        for start, end in bounds:
            window = (max(0, start - before), min(size, end + after))
            if windows and window[0] <= windows[-1][1]:
                windows[-1] = (windows[-1][0], window[1])
            else:
                windows.append(window)
        return windows

    def __repr__(self) -> str:
        return f"PatternDetector({self.name!r}, {self.kind!r})"


# -- Helpers --------------------------------------------------------------------------------


def entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character."""
    if not value:
        return 0.0
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum (card numbers)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if index % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


_DIGIT = re.compile(r"\d")
_NOT_DIGIT = re.compile(r"\D")
_SEPARATORS = re.compile(r"[ ./\-]")

# -- Email ----------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-]|\.\w)"
)

_URL_USERINFO = re.compile(r"://[^\s:/@]+:$")


def _email_ok(match: re.Match[str]) -> bool:
    # scheme://user:password@host is a password in a URL (url_credentials), not an address.
    start = match.start()
    return _URL_USERINFO.search(match.string, max(0, start - 200), start) is None


# -- Phone numbers --------------------------------------------------------------------------

# Where a phone number may be: a digit and six more digits or separators.
_DIGIT_RUN = re.compile(r"\d[\d ().\-/]{6,}")

# Three shapes, told apart by group name; each is checked again in _phone_ok.
_PHONE = re.compile(
    r"(?<![\w.+\-/])(?:"
    # E.164 / international: + country code, then digit groups (mixed separators allowed).
    r"(?P<intl>\+[1-9]\d{0,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,6})){1,6})"
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, 415 555 2671, 1-800-...
    r"|(?P<nanp>(?:1[ .\-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}(?P<ns>[ .\-]))[2-9]\d{2}"
    r"(?(ns)(?P=ns)|[ .\-])\d{4})"
    # Trunk-prefixed national: 020 7946 0958, 06 12 34 56 78, (030) 1234567, 030/1234567.
    r"|(?P<trunk>(?:\(0[1-9]\d{0,4}\) ?|0[1-9]\d{0,4}[ ./\-])\d{2,8}(?:[ ./\-]\d{2,8}){0,3})"
    r")(?![\w]|[.\-/]\d)"
)


def _phone_ok(match: re.Match[str]) -> bool:
    text = match.group(0)
    digits = len(_DIGIT.findall(text))
    if match.group("intl") is not None:
        return 8 <= digits <= 15
    if match.group("nanp") is not None:
        return True
    # Trunk-prefixed: one kind of separator after any "(0xx)" area code, 9-12 digits.
    rest = text[text.index(")") + 1 :] if text.startswith("(") else text
    return 9 <= digits <= 12 and len(set(_SEPARATORS.findall(rest.strip()))) <= 1


# -- Cards ----------------------------------------------------------------------------------

# The look-behind follows the first digit so that ``re`` can skip ahead to candidate digits.
_CARD = re.compile(r"[2-6](?<![\w.+\-].)(?:[ \-]?\d){12,18}(?![\w]|[.\-]\d)")


def _card_ok(match: re.Match[str]) -> bool:
    text = match.group(0)
    separators = set(_SEPARATORS.findall(text))
    if len(separators) > 1:
        return False
    if separators and min(len(g) for g in re.split(r"[ \-]", text)) < 3:
        return False
    return luhn_ok(_NOT_DIGIT.sub("", text))


# -- Keys and tokens ------------------------------------------------------------------------

_PW_NAMES = "password|passwd|passphrase|pwd"
_CREDENTIAL_NAMES = (
    r"secret|token|api[_\-]?key|access[_\-]?key|secret[_\-]?key|private[_\-]?key"
    r"|credentials?|auth"
)
# Matched on the lowercased text, at a place where one of _KEY_ROOTS starts.
_KEY_VALUE = re.compile(
    rf"(?:(?P<password>{_PW_NAMES})|(?:{_CREDENTIAL_NAMES}))"
    r"[\"']?\s{0,3}[:=]\s{0,3}[\"']?(?P<value>[^\s\"',;&<>]{4,})"
)
_KEY_ROOTS = ("pass", "pwd", "secret", "token", "api", "access", "private", "credential", "auth")
_PLACEHOLDER_VALUE = re.compile(
    r"(?i)^(?:\[.*|\$.*|<.*|%\(.*|\{.*|\*+|x+|•+|null|none|nil|true|false|redacted"
    r"|tok_[0-9a-f]{20}.*)$"  # the last: a redaction token, as in [SECRET:tok_…]
)


class KeyValueSecretDetector(Detector):
    """Values after secret-looking key names in text: ``password=…``, ``"api_key": "…"``.

    Any password-like value counts (``password``, ``passwd``, ``passphrase``, ``pwd``); under
    other names (``secret``, ``token``, ``api_key``, ``access_key``, ``private_key``,
    ``credentials``, ``auth``, also as suffixes: ``GITHUB_TOKEN=``) only values of 8 or more
    characters with at least 3 bits of entropy per character. Placeholders (``${TOKEN}``,
    ``<secret>``, ``****``, ``null``, a redaction token) are left alone.
    """

    name = "key_value_secret"
    kind = "SECRET"
    min_length = 8

    def find(self, text: str) -> list[Span]:
        """Each secret value, found from the key names (``str.find``, no full-text regex)."""
        lowered = text.lower()
        if len(lowered) != len(text):  # a few characters lowercase to two; rare
            lowered = text.translate(_ASCII_LOWER)
        spans = []
        for root in _KEY_ROOTS:
            at = lowered.find(root)
            while at >= 0:
                match = _KEY_VALUE.match(lowered, at)
                if match is not None:
                    start, end = match.span("value")
                    value = text[start:end]
                    if not _PLACEHOLDER_VALUE.match(value) and (
                        match.group("password") is not None
                        or (len(value) >= 8 and entropy(value) >= 3.0)
                    ):
                        spans.append(Span(start, end, self.kind))
                at = lowered.find(root, at + 1)
        return spans


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _credential_ok(match: re.Match[str]) -> bool:
    value = match.group(1)
    return len(value) >= 16 and entropy(value) >= 3.0


def builtin_detectors() -> list[Detector]:
    """The built-in detectors, in a new list (each call returns fresh instances)."""
    return [
        PatternDetector(
            "email",
            "EMAIL",
            pattern=_EMAIL,
            validate=_email_ok,
            anchor="@",
            reach=(64, 256),
            min_length=6,
        ),
        PatternDetector(
            "phone",
            "PHONE",
            pattern=_PHONE,
            validate=_phone_ok,
            anchor=_DIGIT_RUN,
            reach=(3, 2),
            min_length=9,
        ),
        PatternDetector("card", "CARD", pattern=_CARD, validate=_card_ok, min_length=13),
        PatternDetector(
            "anthropic_key",
            "API_KEY",
            pattern=r"(?<![\w\-])sk-ant-[A-Za-z0-9_\-]{20,}",
            hints=("sk-ant-",),
            min_length=27,
        ),
        PatternDetector(
            "openai_key",
            "API_KEY",
            pattern=r"(?<![\w\-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
            hints=("sk-",),
            min_length=23,
        ),
        PatternDetector(
            "github_token",
            "TOKEN",
            pattern=r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}"
            r"|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])",
            hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
            min_length=33,
        ),
        PatternDetector(
            "aws_access_key",
            "API_KEY",
            pattern=r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
            hints=("AKIA", "ASIA"),
            min_length=20,
        ),
        PatternDetector(
            "slack_token",
            "TOKEN",
            pattern=r"(?<![\w\-])xox[abposr]-[A-Za-z0-9\-]{10,}",
            hints=("xox",),
            min_length=15,
        ),
        PatternDetector(
            "jwt",
            "TOKEN",
            pattern=r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
            hints=("eyJ",),
            min_length=24,
        ),
        PatternDetector(
            "bearer",
            "TOKEN",
            pattern=r"(?i)\bbearer\s+([A-Za-z0-9._~+/\-]+=*)",
            hints=("earer", "EARER"),
            group=1,
            validate=_credential_ok,
            min_length=23,
        ),
        PatternDetector(
            "basic_auth",
            "TOKEN",
            pattern=r"(?i)authorization[\"']?\s*[:=]\s*[\"']?basic\s+([A-Za-z0-9+/]+=*)",
            hints=("asic", "ASIC"),
            group=1,
            min_length=21,
        ),
        PatternDetector(
            "pem_private_key",
            "PRIVATE_KEY",
            pattern=r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            hints=("PRIVATE KEY-----",),
            min_length=27,
        ),
        PatternDetector(
            "url_credentials",
            "SECRET",
            pattern=r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:([^\s:/@]+)@",
            hints=("://",),
            group=1,
            min_length=8,
        ),
        PatternDetector(
            "kernos_api_key",
            "API_KEY",
            pattern=r"(?<![A-Za-z0-9\-])kn_[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])",
            hints=("kn_",),
            min_length=46,
        ),
        KeyValueSecretDetector(),
    ]
