"""Policy decisions: the cached engine against pycasbin's plain Enforcer, same policy.

    python bench/policy.py [--quick]

Policy: the 410-line synthetic RBAC-with-domains policy (5 tenants, 50 tools, 200 users;
``kernos.policy.synthetic``), seeded into a fresh SQLite kernel database. Baseline: a plain
``casbin.Enforcer`` on the same model and lines (``enforce_ex``, as the engine calls it).

* cached: ``await engine.check(...)`` over a warmed pool of requests (the path every repeated
  syscall takes), and the authorizer's owner ∩ agent decision for a process's tool call;
* cold: requests the engine has not seen (a cache miss: validation, Casbin, insertion),
  interleaved with the plain Enforcer on the same requests;
* a change: ``add`` then ``remove`` of a line, each in force when it returns (validate,
  compile the new policy off the loop, one group commit with the version bump, swap).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

import benchlib
import casbin

TARGET_CACHED_US = 2.0


async def measure(quick: bool) -> list[str]:
    from kernos.kernel.identity import Principal, PrincipalKind
    from kernos.kernel.settings import load_settings
    from kernos.kernel.storage import migrate
    from kernos.kernel.storage.database import Database
    from kernos.kernel.syscalls import AuthRequest
    from kernos.policy.authorizer import CasbinAuthorizer
    from kernos.policy.engine import PolicyEngine
    from kernos.policy.rules import MODEL_PATH
    from kernos.policy.synthetic import generate_policy, request_pool

    pool_size = 200 if quick else 1000
    cold_count = 100 if quick else 400
    reps = 5 if quick else 15
    changes = 5 if quick else 30

    for key in list(os.environ):
        if key.startswith("KERNOS_"):
            del os.environ[key]
    policy = generate_policy()
    with tempfile.TemporaryDirectory(prefix="kernos-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        csv = Path(tmp) / "policy.csv"
        csv.write_text(policy.csv)
        settings = load_settings(home=home)
        await asyncio.to_thread(migrate.upgrade, settings.db_url)
        db = Database(settings)
        await db.start()
        engine = PolicyEngine(db, default_policy=csv, refresh_seconds=1.0)
        await engine.start()
        plain = casbin.Enforcer(str(MODEL_PATH), str(csv))
        plain.logger = logging.Logger("plain", level=logging.CRITICAL + 1)  # as the engine's
        try:
            requests = request_pool(policy, pool_size + cold_count * reps, seed=3)
            warm, cold = requests[:pool_size], requests[pool_size:]
            for request in warm:
                await engine.check(*request)

            cached: list[float] = []
            for _ in range(reps):
                started = time.perf_counter()
                for _ in range(10):
                    for request in warm:
                        await engine.check(*request)
                cached.append((time.perf_counter() - started) / (10 * len(warm)))

            manifest = {("tool:*", "call")}
            authorizer = CasbinAuthorizer(engine, manifest=lambda agent: manifest)
            user, tenant = next(
                (line.subject, line.tenant)
                for line in policy.lines
                if line.ptype == "g" and line.fields[1] == "role:operator"
            )
            auth_request = AuthRequest(
                principal=Principal(tenant=tenant, name=user, kind=PrincipalKind.PERSON),
                tenant=tenant,
                obj="tool:tool1",
                action="call",
                pid=1,
                agent="bench",
            )
            if not (await authorizer.authorize(auth_request)).allowed:
                raise SystemExit("the authorizer benchmark needs an allowed request")
            authorized: list[float] = []
            for _ in range(reps):
                started = time.perf_counter()
                for _ in range(5000):
                    await authorizer.authorize(auth_request)
                authorized.append((time.perf_counter() - started) / 5000)

            engine_cold: list[float] = []
            plain_cold: list[float] = []
            for rep in range(reps):  # interleaved, so drift hits both alike
                batch = cold[rep * cold_count : (rep + 1) * cold_count]
                started = time.perf_counter()
                for request in batch:
                    plain.enforce_ex(*request)
                plain_cold.append((time.perf_counter() - started) / len(batch))
                started = time.perf_counter()
                for request in batch:
                    await engine.check(*request)
                engine_cold.append((time.perf_counter() - started) / len(batch))

            change: list[float] = []
            for i in range(changes):
                line = f"p, user{i}, tenant1, tool:bench, call, allow"
                started = time.perf_counter()
                await engine.add(line)
                await engine.remove(line)
                change.append((time.perf_counter() - started) / 2)
        finally:
            await engine.close()
            await db.stop()

    med_cached = benchlib.median(cached) * 1e6
    med_auth = benchlib.median(authorized) * 1e6
    med_engine = benchlib.median(engine_cold) * 1e6
    med_plain = benchlib.median(plain_cold) * 1e6
    med_change = benchlib.median(change) * 1e3
    return [
        f"## Policy decisions: {len(policy.lines)}-line RBAC-with-domains policy "
        f"(median of {reps} samples)",
        "",
        *benchlib.table(
            ["decision", "per decision", "vs plain Enforcer"],
            [
                ["plain `casbin.Enforcer.enforce_ex`", f"{med_plain:,.1f} µs", "1.00×"],
                [
                    "engine, cold (cache miss)",
                    f"{med_engine:,.1f} µs",
                    f"{med_engine / med_plain:.2f}×",
                ],
                [
                    f"engine, cached (`await check`, pool of {pool_size})",
                    f"{med_cached:.2f} µs",
                    f"{med_cached / med_plain:.4f}× ({med_plain / med_cached:,.0f}× faster)",
                ],
                [
                    "authorizer, cached (owner ∩ agent manifest)",
                    f"{med_auth:.2f} µs",
                    f"{med_auth / med_plain:.4f}×",
                ],
            ],
        ),
        "",
        f"A change (`add` or `remove`, in force on return; SQLite, synchronous=FULL): "
        f"{med_change:.1f} ms median of {changes * 2}.",
        "",
        f"Target cached decision median ≤ {TARGET_CACHED_US:.0f} µs: "
        f"{benchlib.met(med_cached <= TARGET_CACHED_US)} ({med_cached:.2f} µs).",
        "",
    ]


def main() -> None:
    args = benchlib.parse_args(__doc__ or "")
    lines = asyncio.run(measure(args.quick))
    benchlib.emit([benchlib.machine_line(), "", *lines])


if __name__ == "__main__":
    main()
