"""The cached engine answers exactly like a plain Casbin enforcer: 100,000 random requests on
the 410-line synthetic policy, also right after each of a series of changes.

The reference is ``casbin.Enforcer`` on the same model, loading a CSV file rewritten after
every change. Its answer for a request is memoized only until the next change (a plain dict
the test resets), so each comparison is against what pycasbin itself says for the policy in
force. Requests are drawn from a fixed pool, so most hit the engine's cache — the cached
answers made before a change are exactly what the changes must invalidate.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import casbin
import pytest

from kernos.policy.rules import MODEL_PATH, PolicyLine, parse_line
from kernos.policy.synthetic import generate_policy, request_pool

from .conftest import EngineFactory

REQUESTS = 100_000
POOL = 600
SERIES = 4
CHANGES_PER_SERIES = 5

Request = tuple[str, str, str, str]


class Reference:
    """A plain pycasbin enforcer on the lines the test keeps, in the engine's order."""

    def __init__(self, lines: list[PolicyLine], folder: Path) -> None:
        self.lines = list(lines)
        self._csv = folder / "reference.csv"
        self._answers: dict[Request, tuple[bool, str]] = {}
        self._load()

    def _load(self) -> None:
        self._csv.write_text("".join(f"{line.text}\n" for line in self.lines))
        self._enforcer = casbin.Enforcer(str(MODEL_PATH), str(self._csv))
        self._enforcer.logger = logging.Logger("reference", level=logging.CRITICAL + 1)
        self._answers = {}

    def add(self, line: PolicyLine) -> None:
        # The engine keeps rules first, then role assignments, each in the order added.
        rules = [ln for ln in self.lines if ln.ptype == "p"]
        groups = [ln for ln in self.lines if ln.ptype == "g"]
        (rules if line.ptype == "p" else groups).append(line)
        self.lines = rules + groups
        self._load()

    def remove(self, line: PolicyLine) -> None:
        self.lines.remove(line)
        self._load()

    def answer(self, request: Request) -> tuple[bool, str]:
        found = self._answers.get(request)
        if found is None:
            allowed, explain = self._enforcer.enforce_ex(*request)
            rule = "p, " + ", ".join(explain) if explain else "deny-by-default: no rule matched"
            found = self._answers[request] = (bool(allowed), rule)
        return found


def _change(rng: random.Random, ref: Reference, pool: list[Request]) -> tuple[str, PolicyLine]:
    """A change chosen to flip the answer to some request in the pool."""
    while True:
        kind = rng.randrange(5)
        subject, tenant, obj, action = rng.choice(pool)
        if (
            kind == 0
            and subject.startswith("user")
            and ref.answer((subject, tenant, obj, action))[0]
        ):
            line = parse_line(f"p, {subject}, {tenant}, {obj}, {action}, deny")
        elif kind == 1 and subject.startswith("user") and tenant.startswith("tenant"):
            line = parse_line(f"g, {subject}, role:operator, {tenant}")
        elif kind == 2:
            groups = [ln for ln in ref.lines if ln.ptype == "g" and ln.subject == subject]
            if groups:
                return "remove", rng.choice(groups)
            continue
        elif kind == 3:
            allowed, rule = ref.answer((subject, tenant, obj, action))
            if allowed and "role:" not in rule:
                return "remove", parse_line(rule)
            continue
        elif kind == 4 and subject.startswith("agent:") and obj.startswith("tool:"):
            line = parse_line(f"p, {subject}, *, {obj}, call, allow")
        else:
            continue
        if line not in ref.lines:
            return "add", line


@pytest.mark.parametrize("kernos_database_url", [None], ids=["sqlite"])
async def test_cached_answers_equal_plain_casbin(
    open_engine: EngineFactory, tmp_path: Path
) -> None:
    policy = generate_policy()
    assert len(policy.lines) == 410
    seed_file = tmp_path / "synthetic.csv"
    seed_file.write_text(policy.csv)
    engine = await open_engine(default_policy=seed_file)
    ref = Reference(list(policy.lines), tmp_path)
    assert await engine.list() == ref.lines

    rng = random.Random(2026)
    pool = request_pool(policy, POOL)
    per_phase = REQUESTS // (SERIES + 1)
    compared = 0
    outcomes: set[tuple[bool, bool]] = set()  # (allowed, by a deny rule) seen

    async def compare(request: Request) -> None:
        nonlocal compared
        decision = await engine.check(*request)
        expected = ref.answer(request)
        assert (decision.allowed, decision.rule) == expected, request
        outcomes.add((decision.allowed, decision.rule.endswith("deny")))
        compared += 1

    for series in range(SERIES + 1):
        if series:
            for _ in range(CHANGES_PER_SERIES):
                what, line = _change(rng, ref, pool)
                if what == "add":
                    await engine.add(line.text)
                    ref.add(line)
                else:
                    await engine.remove(line.text)
                    ref.remove(line)
                # Right after the change: the requests it is about, then some cached ones.
                about = [r for r in pool if line.subject == r[0]] or [rng.choice(pool)]
                for request in about[:20] + rng.sample(pool, 20):
                    await compare(request)
        goal = per_phase * (series + 1)
        while compared < goal:
            await compare(rng.choice(pool))
    assert compared == REQUESTS
    assert await engine.list() == ref.lines
    # The pool exercised allows, plain denials and deny rules.
    assert outcomes == {(True, False), (False, False), (False, True)}
