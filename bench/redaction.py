"""What redaction costs on the two paths it guards: audit records and LLM messages.

    python bench/redaction.py [--quick]

Inputs (built before timing, different values in every one, so each value found is new to
the redactor and pays its HMAC token and AES-GCM sealing):

* **audit record**: a tool call's arguments, 10 fields, with an email, a phone number, a
  phone number inside a free-text note and an ``api_key`` field (replaced whole);
* **clean audit record**: the same shape with nothing to redact;
* **2 KB chat message**: dispatcher prose with two email addresses and a phone number;
* **2 KB clean chat message**: the same prose, addresses and number left out;
* **2 KB sensor dump**: readings, timestamps and ids, digits everywhere (the worst case for
  the phone and card detectors, which must find nothing in it).

Baseline ("off"): the canonical JSON encoding the value gets anyway on both paths
(``json.dumps(..., sort_keys=True)``: the audit chain hashes it, the LLM client sends it).
"On": the built-in redactor, then the same encoding. Per-call CPU time on one thread,
median of the rounds; every round uses a fresh redactor (no cached tokens).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import benchlib

from kernos.policy.redaction import DetectorRegistry, Redactor
from kernos.policy.vault import VaultKey

TARGET_RECORD_US = 100.0  # added per audit record
TARGET_MESSAGE_US = 250.0  # added per 2 KB chat message

PROSE = (
    "Hi team, quick update on the north district collection run for today. The dispatcher "
    "flagged three bins above 85% fill at Elm Street, Harbour Road and the market square, "
    "and the forecast model expects two more to cross the threshold before 14:00. Truck 7 "
    "is already on the east loop, so I would move the market square pickup to truck 12, "
    "which has capacity after its 11:30 stop. The hazard classifier marked one bin at "
    "Harbour Road as possible glass; please make sure the crew has gloves. {contact}Sensor "
    "0x1f reported 0.8723 and then 0.9114 within ten minutes, which looks like calibration "
    "drift rather than a real fill jump, so I have opened ticket {ticket} to have it checked "
    "on Thursday. The route solver finished in 2.4 seconds with 41 stops and an estimated "
    "63 km total, about 8% shorter than yesterday. Version 3.12.1 of the edge agent is now "
    "on all gateways. Residents on Elm Street asked again about the new schedule; the letter "
    "goes out on 2024-05-06 and the website update is scheduled for 09:00 the same day. Let "
    "me know if the crew at depot B needs the updated manifest printed, otherwise it will be "
    "on the tablets by 10:15. Budget-wise we are at 61% of the monthly fuel allowance with "
    "nine working days left, which is within plan. The overtime request for Saturday is "
    "pending with finance, and the contractor invoice for the compactor repair was approved "
    "yesterday afternoon. Thanks everyone, and drive safe out there today; see you at the "
    "depot briefing tomorrow morning at 07:45 sharp, coffee is on me this time."
)


def chat(i: int, *, pii: bool) -> str:
    contact = (
        f"If anything changes, call me on +44 20 7946 {i % 10000:04d} or write to "
        f"maria.lopez{i}@citywaste.example.org, and copy ops-desk{i}@citywaste.example.org. "
        if pii
        else "If anything changes, call me or write to me, and copy the duty desk as usual. "
    )
    return PROSE.format(contact=contact, ticket=48213 + i)


def record(i: int, *, pii: bool) -> dict[str, Any]:
    return {
        "tool": "dispatch_trucks",
        "route_id": f"north-2024-05-06-{i}",
        "truck": 12,
        "stops": ["elm-st-14", "harbour-rd-3", f"market-sq-{i % 7}"],
        "eta_minutes": 42.5,
        "driver_email": f"j.okafor{i}@citywaste.example.org" if pii else "on file",
        "driver_phone": f"+44 7700 9{i % 100000:05d}" if pii else "on file",
        "notes": (
            f"Gate code is on the sheet; call the resident at 020 7946 {i % 10000:04d} if blocked."
            if pii
            else "Gate code is on the sheet; call the resident if blocked."
        ),
        "api_key": f"sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a{i:06d}" if pii else None,
        "priority": "high",
    }


def sensor_dump(i: int) -> str:
    lines = []
    k = i
    while sum(len(line) + 1 for line in lines) < 2000:
        k += 1
        lines.append(
            f"bin-{k % 9000 + 1000} fill 0.{k * 7919 % 10000:04d} temp {k % 30}.{k % 10} "
            f"at 2024-05-06T10:{k % 60:02d}:{k * 7 % 60:02d}Z pid {k * 31 % 99991}"
        )
    return "\n".join(lines)[:2048]


def per_call_us(fn: Callable[[Any], Any], inputs: list[Any]) -> float:
    started = time.process_time()
    for value in inputs:
        fn(value)
    return (time.process_time() - started) / len(inputs) * 1e6


def encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def measure(quick: bool) -> list[str]:
    rounds = 3 if quick else 9
    per_round = 200 if quick else 2000
    key = VaultKey.generate()
    registry = DetectorRegistry.with_builtins()
    cases: dict[str, Callable[[int], Any]] = {
        "audit record (10 fields, 4 with PII)": lambda i: record(i, pii=True),
        "clean audit record (10 fields)": lambda i: record(i, pii=False),
        "2 KB chat message (3 PII values)": lambda i: chat(i, pii=True),
        "2 KB clean chat message": lambda i: chat(i, pii=False),
        "2 KB sensor dump (digits everywhere)": sensor_dump,
    }
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    found: dict[str, int] = {}
    for r in range(rounds):
        for name, make in cases.items():
            inputs = [make(r * per_round + i) for i in range(per_round)]
            redactor: Redactor = registry.redactor(key)

            def on(value: Any, redactor: Redactor = redactor) -> str:
                return encode(redactor.redact(value, tenant="acme").value)

            off_us, on_us = samples[name]
            off_us.append(per_call_us(encode, inputs))
            on_us.append(per_call_us(on, inputs))
            found[name] = len(registry.redactor(key).redact(inputs[0], tenant="acme").entries)

    rows = []
    added: dict[str, float] = {}
    for name, (off_us, on_us) in samples.items():
        off, on_ = benchlib.median(off_us), benchlib.median(on_us)
        added[name] = on_ - off
        rows.append(
            [name, found[name], f"{off:.1f} µs", f"{on_:.1f} µs", f"{on_ - off:.1f} µs",
             f"{on_ / off:.1f}×"]
        )  # fmt: skip
    record_added = added["audit record (10 fields, 4 with PII)"]
    message_added = added["2 KB chat message (3 PII values)"]
    return [
        f"## Redaction (per call, CPU, median of {rounds} rounds × {per_round:,} distinct inputs)",
        "",
        *benchlib.table(
            ["input", "values tokenized", "off (JSON only)", "on", "added", "on / off"], rows
        ),
        "",
        f"Detectors: {len(registry)} built-in. Proposed targets: added ≤ {TARGET_RECORD_US:.0f} µs "
        f"per audit record {benchlib.met(record_added <= TARGET_RECORD_US)} "
        f"({record_added:.0f} µs); added ≤ {TARGET_MESSAGE_US:.0f} µs per 2 KB message "
        f"{benchlib.met(message_added <= TARGET_MESSAGE_US)} ({message_added:.0f} µs).",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    benchlib.emit([benchlib.machine_line(), "", *measure(args.quick)])


if __name__ == "__main__":
    main()
