"""The redactor: nested values, field-level rules, deterministic tokens, pluggable detectors."""

from __future__ import annotations

import copy
import json
import re

import pytest

from kernos.kernel.errors import DuplicateRegistration, InvalidInput, PluginError
from kernos.policy.redaction import (
    Detector,
    DetectorRegistry,
    PatternDetector,
    Redactor,
    Span,
)
from kernos.policy.vault import PLACEHOLDER_PATTERN, VaultKey

EMAIL = "maria.lopez@citywaste.example.org"
PHONE = "+44 20 7946 0958"
OPENAI = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
TOKEN_SHAPE = re.compile(r"^\[[A-Z_]+:tok_[0-9a-f]{20}\]$")


@pytest.fixture
def key() -> VaultKey:
    return VaultKey.generate()


@pytest.fixture
def redactor(key: VaultKey) -> Redactor:
    return DetectorRegistry.with_builtins().redactor(key)


def placeholders(value: object) -> list[tuple[str, str]]:
    """Every ``[KIND:tok_…]`` in a JSON-like value, as (kind, token), in order."""
    return PLACEHOLDER_PATTERN.findall(json.dumps(value))


def test_text_is_redacted_span_by_span(redactor: Redactor) -> None:
    text = f"Call {PHONE} or mail {EMAIL}; key {OPENAI}. Reading 0.8723 at 2024-05-01T12:30:45Z."
    result = redactor.redact(text, tenant="acme")
    assert EMAIL not in result.value and PHONE not in result.value and OPENAI not in result.value
    assert re.fullmatch(
        r"Call \[PHONE:tok_[0-9a-f]{20}\] or mail \[EMAIL:tok_[0-9a-f]{20}\]; "
        r"key \[API_KEY:tok_[0-9a-f]{20}\]\. Reading 0\.8723 at 2024-05-01T12:30:45Z\.",
        result.value,
    )
    assert sorted(e.kind for e in result.entries) == ["API_KEY", "EMAIL", "PHONE"]
    assert all(e.tenant == "acme" for e in result.entries)
    assert result.found


def test_nested_values_are_redacted_and_the_input_is_left_alone(redactor: Redactor) -> None:
    value = {
        "tool": "dispatch_trucks",
        "truck": 12,
        "eta": 42.5,
        "urgent": True,
        "stops": ["elm-st-14", {"contact": EMAIL, "phones": (PHONE, "n/a")}],
        "meta": {"reading": "0.8723", "ids": [48213, 5551234567]},
        "messages": [{"role": "user", "content": f"my card is 4111 1111 1111 1111, {EMAIL}"}],
    }
    before = copy.deepcopy(value)
    result = redactor.redact(value, tenant="acme")
    assert value == before  # never modified in place
    out = result.value
    assert out["tool"] == "dispatch_trucks" and out["truck"] == 12 and out["eta"] == 42.5
    assert out["urgent"] is True
    assert TOKEN_SHAPE.match(out["stops"][1]["contact"])
    assert isinstance(out["stops"][1]["phones"], tuple)
    assert TOKEN_SHAPE.match(out["stops"][1]["phones"][0])
    assert out["stops"][1]["phones"][1] == "n/a"
    assert out["messages"][0]["content"].startswith("my card is [CARD:tok_")
    # Parts with nothing to redact are shared, not copied.
    assert out["meta"] is value["meta"]
    assert out["stops"][0] is value["stops"][0]
    # One entry per distinct value: the email appears twice, it is stored once.
    assert sorted(e.kind for e in result.entries) == ["CARD", "EMAIL", "PHONE"]
    tokens = dict((t, k) for k, t in placeholders(out))
    assert set(tokens) == {e.token for e in result.entries}


def test_a_value_with_nothing_to_redact_comes_back_as_is(redactor: Redactor) -> None:
    value = {"route": ["north-2024-05-06-a"], "fill": [0.8723, 0.9114], "pid": 4152}
    result = redactor.redact(value, tenant="acme")
    assert result.value is value
    assert result.entries == ()
    assert not result.found


@pytest.mark.parametrize(
    "key_name",
    [
        "password",
        "db_password",
        "PASSWD",
        "api_key",
        "X-Api-Key",
        "apiKey",
        "Authorization",
        "proxy-authorization",
        "secret",
        "client_secret",
        "token",
        "refresh_token",
        "accessToken",
        "private_key",
        "Cookie",
        "set-cookie",
        "credentials",
    ],
)
def test_values_under_secret_keys_are_replaced_whole(redactor: Redactor, key_name: str) -> None:
    result = redactor.redact({key_name: "hunter2", "other": "hunter2"}, tenant="acme")
    assert re.fullmatch(r"\[SECRET:tok_[0-9a-f]{20}\]", result.value[key_name])
    assert result.value["other"] == "hunter2"
    assert [(e.kind, e.tenant) for e in result.entries] == [("SECRET", "acme")]


@pytest.mark.parametrize(
    "key_name", ["max_tokens", "token_count", "tokenizer", "input_tokens", "key", "secretary"]
)
def test_keys_that_only_look_secret_are_not(redactor: Redactor, key_name: str) -> None:
    assert redactor.redact({key_name: "hunter2"}, tenant="acme").value == {key_name: "hunter2"}


def test_secret_fields_of_any_type(redactor: Redactor, key: VaultKey) -> None:
    value = {
        "credentials": {"user": "bob", "pass": "x"},
        "token": 123456,
        "password": None,
        "secret": False,
        "api_key": "",
        "Authorization": "Bearer abc",
    }
    result = redactor.redact(value, tenant="acme")
    out = result.value
    assert TOKEN_SHAPE.match(out["credentials"]) and TOKEN_SHAPE.match(out["token"])
    assert out["password"] is None and out["secret"] is False and out["api_key"] == ""
    assert TOKEN_SHAPE.match(out["Authorization"])
    by_token = {e.token: e for e in result.entries}
    sealed = by_token[PLACEHOLDER_PATTERN.fullmatch(out["credentials"]).group(2)]
    original = key.open(sealed.ciphertext, token=sealed.token, tenant="acme", kind="SECRET")
    assert json.loads(original) == {"user": "bob", "pass": "x"}


def test_custom_secret_fields(key: VaultKey) -> None:
    redactor = DetectorRegistry.with_builtins().redactor(key, secret_fields=("pin", "ssn"))
    out = redactor.redact({"card_pin": "1234", "ssn": "078-05-1120", "password": "x"}, tenant="t")
    assert TOKEN_SHAPE.match(out.value["card_pin"]) and TOKEN_SHAPE.match(out.value["ssn"])
    assert out.value["password"] == "x"
    assert redactor.is_secret_field("CARD-PIN") and not redactor.is_secret_field("pinned")


def test_tokens_are_deterministic_per_tenant_and_kind(key: VaultKey) -> None:
    one = DetectorRegistry.with_builtins().redactor(key)
    two = DetectorRegistry.with_builtins().redactor(key)
    text = f"mail {EMAIL}"
    first = one.redact(text, tenant="acme").value
    assert one.redact(text, tenant="acme").value == first
    assert two.redact({"x": [text]}, tenant="acme").value == {"x": [first]}
    # Another tenant, kind or key gives another token.
    other_tenant = one.redact(text, tenant="globex").value
    assert other_tenant != first
    assert key.token("acme", "EMAIL", EMAIL) != key.token("acme", "SECRET", EMAIL)
    other_key = DetectorRegistry.with_builtins().redactor(VaultKey.generate())
    assert other_key.redact(text, tenant="acme").value != first
    assert first == f"mail [EMAIL:{key.token('acme', 'EMAIL', EMAIL)}]"


def test_redacting_twice_changes_nothing_more(redactor: Redactor) -> None:
    value = {
        "text": f"{EMAIL} {PHONE} {OPENAI} 4111111111111111 password=hunter22",
        "password": "hunter22",
        "token": "x",
    }
    once = redactor.redact(value, tenant="acme")
    twice = redactor.redact(once.value, tenant="acme")
    assert twice.value == once.value
    assert twice.entries == ()


def test_entries_are_sealed_originals(redactor: Redactor, key: VaultKey) -> None:
    result = redactor.redact(f"mail {EMAIL}", tenant="acme")
    (entry,) = result.entries
    assert EMAIL.encode() not in entry.ciphertext
    assert entry.key_id == key.key_id
    assert key.open(entry.ciphertext, token=entry.token, tenant="acme", kind="EMAIL") == EMAIL


def test_mapping_keys_are_redacted_too(redactor: Redactor) -> None:
    out = redactor.redact({EMAIL: {"visits": 3}, "plain_key": 1}, tenant="acme").value
    (redacted_key,) = [k for k in out if k != "plain_key"]
    assert TOKEN_SHAPE.match(redacted_key)
    assert out[redacted_key] == {"visits": 3}


def test_large_integers_that_are_card_numbers(redactor: Redactor) -> None:
    out = redactor.redact({"pan": 4111111111111111, "id": 4111111111111112, "n": 7}, tenant="t")
    assert TOKEN_SHAPE.match(out.value["pan"])
    assert out.value["id"] == 4111111111111112 and out.value["n"] == 7


# -- Pluggable detectors --------------------------------------------------------------------


class EmployeeIds(Detector):
    """A third-party detector: employee ids like E-123456."""

    name = "employee_id"
    kind = "EMPLOYEE"
    min_length = 8

    def find(self, text: str) -> list[Span]:
        return [Span(m.start(), m.end(), self.kind) for m in re.finditer(r"E-\d{6}", text)]


def test_a_registered_detector_is_used(key: VaultKey) -> None:
    registry = DetectorRegistry.with_builtins()
    before = registry.redactor(key)
    registry.register(EmployeeIds())
    assert "employee_id" in registry and registry.names[-1] == "employee_id"
    out = registry.redactor(key).redact("badge E-123456 for maria", tenant="acme")
    assert re.fullmatch(r"badge \[EMPLOYEE:tok_[0-9a-f]{20}\] for maria", out.value)
    # A redactor keeps the detectors it was built with.
    assert before.redact("badge E-123456", tenant="acme").value == "badge E-123456"


def test_registration_rules(key: VaultKey) -> None:
    registry = DetectorRegistry([EmployeeIds()])
    assert len(registry) == 1
    with pytest.raises(DuplicateRegistration, match="'employee_id' is already registered"):
        registry.register(EmployeeIds())
    replacement = PatternDetector("employee_id", "STAFF", pattern=r"E-\d{6}")
    registry.register(replacement, replace=True)
    assert list(registry) == [replacement]
    assert registry.redactor(key).redact("E-123456", tenant="t").value.startswith("[STAFF:")
    with pytest.raises(InvalidInput, match="not a redaction Detector"):
        registry.register(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="name 'Bad Name'"):
        registry.register(PatternDetector("Bad Name", "X", pattern="x"))
    with pytest.raises(InvalidInput, match="kind 'email'"):
        registry.register(PatternDetector("lower", "email", pattern="x"))
    with pytest.raises(InvalidInput, match="kind 'A:B'"):
        registry.register(PatternDetector("colon", "A:B", pattern="x"))


def test_overlapping_finds_keep_the_earliest_then_the_longest(key: VaultKey) -> None:
    # "maria.lopez" as a name overlaps the email address; the longer find wins.
    names = PatternDetector("names", "NAME", pattern=r"maria\.lopez")
    redactor = Redactor([names, *DetectorRegistry.with_builtins()], key)
    out = redactor.redact(f"to {EMAIL} and maria.lopez", tenant="t").value
    assert re.fullmatch(r"to \[EMAIL:tok_\w+\] and \[NAME:tok_\w+\]", out)


class Broken(Detector):
    name = "broken"
    kind = "BROKEN"

    def find(self, text: str) -> list[Span]:
        raise ValueError(f"cannot handle {text}")


class OutOfRange(Detector):
    name = "out_of_range"
    kind = "BAD"

    def find(self, text: str) -> list[Span]:
        return [Span(0, len(text) + 5, self.kind)]


def test_a_failing_detector_fails_closed_without_echoing_the_text(key: VaultKey) -> None:
    redactor = Redactor([Broken()], key)
    with pytest.raises(PluginError) as caught:
        redactor.redact({"note": f"mail {EMAIL}"}, tenant="t")
    assert "'broken' failed (ValueError)" in str(caught.value)
    assert EMAIL not in str(caught.value)
    with pytest.raises(PluginError, match="'out_of_range' returned a span"):
        Redactor([OutOfRange()], key).redact("some text here", tenant="t")


def test_short_strings_are_not_scanned(key: VaultKey) -> None:
    seen: list[str] = []

    class Spy(Detector):
        name = "spy"
        kind = "SPY"
        min_length = 1

        def find(self, text: str) -> list[Span]:
            seen.append(text)
            return []

    Redactor([Spy()], key, min_length=6).redact(["abc", "abcdef", {"k": "xy"}], tenant="t")
    assert seen == ["abcdef"]
