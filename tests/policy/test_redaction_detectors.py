"""The built-in redaction detectors: what each finds, and what none of them may find."""

from __future__ import annotations

import pytest

from kernos.policy.detectors import (
    KeyValueSecretDetector,
    PatternDetector,
    Span,
    builtin_detectors,
    entropy,
    luhn_ok,
)

DETECTORS = {d.name: d for d in builtin_detectors()}


def found(name: str, text: str) -> list[str]:
    """What one detector finds in ``text``, as the matched substrings."""
    return [text[s.start : s.end] for s in DETECTORS[name].find(text)]


def found_by_any(text: str) -> dict[str, list[str]]:
    """Every built-in detector's finds in ``text`` (only those that found something)."""
    hits = {name: found(name, text) for name in DETECTORS}
    return {name: values for name, values in hits.items() if values}


# -- Email ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "alice.smith+tag@mail.example.co.uk",
        "o'neil@example.org".replace("'", ""),
        "ops-desk_2@city-waste.example",
        "X.Y@EXAMPLE.COM",
    ],
)
def test_email_finds_addresses(address: str) -> None:
    text = f"write to {address}, or <{address}> (mailto:{address})."
    assert found("email", text) == [address, address, address]


@pytest.mark.parametrize(
    "text",
    [
        "user@localhost is not routable",
        "decorator @property and @dataclass(frozen=True)",
        "meet @ 10:30 at the depot",
        "twitter handle @kernos_os",
        "a@b",
    ],
)
def test_email_ignores_non_addresses(text: str) -> None:
    assert found("email", text) == []


def test_a_password_in_a_url_is_not_an_email_address() -> None:
    text = "postgresql://kernos:s3cret-Pw@db.internal.example/kernos"
    assert found("email", text) == []
    assert found("url_credentials", text) == ["s3cret-Pw"]


def test_email_after_a_long_gap_between_at_signs_is_found_once() -> None:
    text = "a@b " + "x" * 500 + " bob@example.net and carol@example.net"
    assert found("email", text) == ["bob@example.net", "carol@example.net"]


# -- Phone numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "+14155552671",
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "+1-415-555-2671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+33 6 12 34 56 78",
        "+49 30 1234567",
        "+81 3-1234-5678",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "415 555 2671",
        "1-800-555-0199",
        "020 7946 0958",
        "06 12 34 56 78",
        "06-12345678",
        "030/1234567",
        "(030) 1234567",
        "0171 1234567",
    ],
)
def test_phone_finds_numbers(number: str) -> None:
    for text in (number, f"call {number} now", f"tel: {number}.", f"({number})"):
        assert found("phone", text) == [number], text


@pytest.mark.parametrize(
    "text",
    [
        # ISO dates, times and timestamps, and other date formats.
        "2024-05-01",
        "2024-05-01T12:30:45Z",
        "2024-05-01T12:30:45.123456+02:00",
        "2024-05-01 12:30:45",
        "01.05.2024 12:30",
        "05/01/2024",
        "12:30:45",
        "UTC+05:30",
        # Version numbers and addresses.
        "version 10.0.19041.1234",
        "v3.12.1",
        "1.2.3-rc.4",
        "192.168.100.200",
        "2001:db8::8a2e:370:7334",
        # Plain ids and pids.
        "order 5551234567",
        "ticket 48213",
        "pid 12345",
        "pids 1234 5678 9012",
        "processes 4152, 4153, 4154, 4155",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "route north-2024-05-06-a",
        # Sensor readings and other decimals.
        "0.8723",
        "fill 0.8723 0.9114 0.1234 0.5555",
        "coordinates 52.520008, 13.404954",
        "temperature -12.5 humidity 0.8723",
        "total 1,234,567.89",
        "-0.8723",
        "3.14159265358979",
    ],
)
def test_phone_ignores_dates_versions_ids_and_readings(text: str) -> None:
    assert found("phone", text) == []


# -- Cards ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500 0000 0000 0004",
        "3782 822463 10005",
        "6011000990139424",
        "4222222222222",  # 13 digits
        "6011 0009 9013 9424 116",  # 19 digits, Luhn-valid
    ],
)
def test_card_finds_luhn_valid_numbers(number: str) -> None:
    assert luhn_ok(number.replace(" ", "").replace("-", ""))
    assert found("card", f"paid with {number}.") == [number]


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "4111 1111 1111 1112",
        "4111 1111-1111 1111",  # mixed separators
        "41 11 11 11 11 11 11 11",  # not grouped like a card
        "1111111111111117",  # Luhn-valid, but no issuer starts with 1
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits
        "order-4111111111111111",  # part of an id
        "0.4111111111111111",  # a decimal
    ],
)
def test_card_ignores_other_numbers(text: str) -> None:
    assert found("card", text) == []


def test_card_as_an_integer_is_card_shaped_text() -> None:
    # The redactor turns large integers into text for the detectors (see test_redaction.py).
    assert found("card", str(4111111111111111)) == ["4111111111111111"]


# -- Keys and tokens ------------------------------------------------------------------------

SECRETS = {
    "openai_key": [
        "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4",
    ],
    "anthropic_key": ["sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abc"],
    "github_token": [
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
    ],
    "aws_access_key": ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
    "slack_token": ["xoxb-2048-4096-AbCdEfGhIjKl", "xoxp-1234567890-abcdefghij"],
    "jwt": [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    ],
    "kernos_api_key": ["kn_" + "Q2xhdWRlIGlzIGEgZ29vZCBtb2RlbCwgaXNuJ3Qg_-x"],
}


@pytest.mark.parametrize(
    ("name", "secret"), [(name, s) for name, values in SECRETS.items() for s in values]
)
def test_key_and_token_detectors_find_their_secrets(name: str, secret: str) -> None:
    for text in (secret, f"use {secret} here", f'{{"k": "{secret}"}}', f"x={secret};"):
        assert found(name, text) == [secret], text


def test_a_kernos_key_is_exactly_43_characters_after_its_prefix() -> None:
    key = SECRETS["kernos_api_key"][0]
    assert len(key) == 46
    assert found("kernos_api_key", key + "x") == []
    assert found("kernos_api_key", key[:-1]) == []


def test_bearer_and_basic_credentials_keep_the_scheme_visible() -> None:
    text = "Authorization: Bearer abc123DEF456ghi789JKL0.mno"
    assert found("bearer", text) == ["abc123DEF456ghi789JKL0.mno"]
    basic = 'headers: {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}'
    assert found("basic_auth", basic) == ["dXNlcjpwYXNzd29yZA=="]


@pytest.mark.parametrize(
    "text",
    [
        "the Bearer token expired",
        "Bearer authentication is required",
        "basic understanding of the route solver",
        "a task-scheduler-for-the-north-district",
        "risk-assessment-of-the-harbour-road",
        "ghp_short",
        "AKIA is the prefix of AWS access key ids",
        "eyJ alone is not a token",
    ],
)
def test_key_and_token_detectors_ignore_prose(text: str) -> None:
    assert found_by_any(text) == {}


def test_pem_private_key_blocks_are_found_whole_and_public_keys_are_not() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
        "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
        "-----END RSA PRIVATE KEY-----"
    )
    assert found("pem_private_key", f"key:\n{block}\nthanks") == [block]
    escaped = block.replace("\n", "\\n")  # as it appears inside a JSON string
    assert found("pem_private_key", f'{{"key": "{escaped}"}}') == [escaped]
    truncated = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    assert found("pem_private_key", truncated) == [truncated]
    public = (
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    )
    assert found("pem_private_key", public) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password=hunter22", "hunter22"),
        ("DB_PASSWORD: correct-horse", "correct-horse"),
        ('{"passwd": "letmein!"}', "letmein!"),
        ("pwd='abcd'", "abcd"),
        ("api_key=Zx9kQ2mP7vB4nL8w", "Zx9kQ2mP7vB4nL8w"),
        ('"X-Api-Key": "f3a9c1e7b2d84a6f"', "f3a9c1e7b2d84a6f"),
        ("GITHUB_TOKEN=Tk8s7Gq2LmX4pZ9r", "Tk8s7Gq2LmX4pZ9r"),
        ("client_secret: 9fK2mQ7xLp4Rz8Wv", "9fK2mQ7xLp4Rz8Wv"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None),
        ("PRIVATE_KEY=MIIEvQIBADANBgkqhkiG9w0", "MIIEvQIBADANBgkqhkiG9w0"),
    ],
)
def test_key_value_secrets(text: str, value: str | None) -> None:
    expected = value if value is not None else text.split("= ", 1)[1]
    assert found("key_value_secret", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=4096",
        "token_count: 1234",
        "token_type=bearer",
        "token: expiredexpired",  # low entropy under a non-password name
        "password: ********",
        "password=${DB_PASSWORD}",
        "api_key=<your key here>",
        "secret: null",
        "password_required=true",
        "the author: Jane Smith",
        'token: "[SECRET:tok_0123456789abcdef0123]"',
    ],
)
def test_key_value_ignores_non_secrets(text: str) -> None:
    assert found("key_value_secret", text) == []


def test_key_value_keeps_offsets_when_lowercasing_changes_length() -> None:
    # "İ" lowercases to two characters; offsets must still point into the original text.
    text = "İİİ password=Hunter22Abc"
    assert found("key_value_secret", text) == ["Hunter22Abc"]


# -- Helpers and the detector machinery -----------------------------------------------------


def test_entropy_and_luhn() -> None:
    assert entropy("") == 0.0
    assert entropy("aaaa") == 0.0
    assert entropy("abcd") == pytest.approx(2.0)
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


def test_pattern_detector_hints_group_validation_and_anchor() -> None:
    detector = PatternDetector(
        "employee_id",
        "EMPLOYEE",
        pattern=r"emp[:#](\d{6})",
        hints=("emp",),
        group=1,
        validate=lambda m: not m.group(1).startswith("0"),
    )
    assert detector.find("no hint here 123456") == []
    text = "emp#123456 emp:012345 emp:654321"
    assert [text[s.start : s.end] for s in detector.find(text)] == ["123456", "654321"]
    assert detector.find(text)[0] == Span(4, 10, "EMPLOYEE")

    anchored = PatternDetector(
        "ticket", "TICKET", pattern=r"(?<!\w)T-\d{4}(?!\d)", anchor="T-", reach=(1, 8)
    )
    text = "T-1234 and T-99999 and xT-5678 and T-4321"
    assert [text[s.start : s.end] for s in anchored.find(text)] == ["T-1234", "T-4321"]


def test_an_anchor_window_does_not_hide_what_follows_a_match() -> None:
    # The pattern's look-ahead must see past the anchor window's end.
    detector = PatternDetector("code", "CODE", pattern=r"#\d{3}(?!\d)", anchor="#", reach=(0, 3))
    assert detector.find("#1234") == []
    assert detector.find("#123 #456") == [Span(0, 4, "CODE"), Span(5, 9, "CODE")]


def test_builtins_have_unique_names_valid_kinds_and_honest_min_lengths() -> None:
    detectors = builtin_detectors()
    assert len({d.name for d in detectors}) == len(detectors)
    assert {d.kind for d in detectors} == {
        "EMAIL",
        "PHONE",
        "CARD",
        "API_KEY",
        "TOKEN",
        "PRIVATE_KEY",
        "SECRET",
    }
    shortest = {
        "email": "a@b.co",
        "phone": "+12345678",
        "card": "4222222222222",
        "kernos_api_key": SECRETS["kernos_api_key"][0],
        "url_credentials": "a://b:c@",
        "key_value_secret": "pwd=abcd",
        "jwt": "eyJabcdefgh.eyJabcdefgh.",
        "basic_auth": "authorization:basic x",
    }
    for name, text in shortest.items():
        assert DETECTORS[name].min_length == len(text), name
        assert found(name, text), name
        assert not found(name, text[1:]), name
    assert isinstance(DETECTORS["key_value_secret"], KeyValueSecretDetector)
