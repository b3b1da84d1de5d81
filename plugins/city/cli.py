"""``kernos demo waste``: compare a tuned static plan with Kernos dispatch on the simulated city.

Offline by nature: it runs its own kernel on a temporary database (never the one in
``KERNOS_HOME``), so it runs beside a live kernel.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from kernos.kernel.errors import InvalidInput, KernosError

__all__ = ["demo", "waste"]

_ROWS = (
    ("route km", "route_km", "{:,.0f}"),
    ("overflow incidents (bin-days > 100 %)", "overflow_incidents", "{:,.0f}"),
    ("pickups", "pickups", "{:,.0f}"),
    ("mean fill at pickup", "mean_fill_at_pickup", "{:.1%}"),
    ("hazardous escalations", "hazard_escalations", "{:,.0f}"),
    ("  approved by the inspector", "hazard_approved", "{:,.0f}"),
    ("  mean time to decision, min", "mean_decision_min", "{:.1f}"),
    ("raw sensor readings", "raw_readings", "{:,.0f}"),
    ("edge-forwarded readings", "forwarded_readings", "{:,.0f}"),
    ("audit records", "audit_records", "{:,.0f}"),
    ("wall time, s", "wall_s", "{:.1f}"),
)


@click.group()
def demo() -> None:
    """Demonstrations on simulated data (no real bins, trucks or sensors)."""


def _cell(arm: dict[str, Any], key: str, fmt: str) -> str:
    value = arm.get(key)
    if value is None:
        return "-"
    text = fmt.format(value)
    half = (arm.get("ci95") or {}).get(key)
    if half is not None and len(arm.get("runs", [])) > 1:
        text += " ± " + fmt.format(half).lstrip()
    return text


def _table(result: dict[str, Any]) -> None:
    arms = [a for a in ("baseline", "kernos", "sensors", "oracle") if a in result]
    names = {
        "baseline": f"static alpha={result['config']['alpha']:g}",
        "kernos": f"Kernos theta={result['config']['theta']:g}",
        "sensors": "sensors, no forecast",
        "oracle": "oracle",
    }
    rows = [["metric", *[names[a] for a in arms]]]
    rows += [[label, *[_cell(result[a], key, fmt) for a in arms]] for label, key, fmt in _ROWS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        click.echo("  ".join(cells))
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


@demo.command()
@click.option("--days", type=int, default=180, show_default=True, help="Days to simulate.")
@click.option("--bins", type=int, default=None, help="Bins in the city [default: 300].")
@click.option("--trucks", type=int, default=None, help="Trucks [default: 6].")
@click.option("--seed", type=int, default=1, show_default=True, help="First replication's seed.")
@click.option("--replications", type=int, default=1, show_default=True, help="Seeds to run.")
@click.option(
    "--alpha", type=float, default=0.1, show_default=True, help="Static plan's overflow tolerance."
)
@click.option(
    "--theta", type=float, default=0.1, show_default=True, help="Kernos's risk threshold."
)
@click.option("--brackets", is_flag=True, help="Add the oracle and sensors-without-forecast arms.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def waste(
    days: int,
    bins: int | None,
    trucks: int | None,
    seed: int,
    replications: int,
    alpha: float,
    theta: float,
    brackets: bool,
    as_json: bool,
) -> None:
    """Simulate the city under a tuned static plan and under Kernos through a real kernel.

    Both arms see the same waste, events, incidents and sensor faults (common random
    numbers); the first 28 days are a warm-up and not counted. Hazardous pickups wait for a
    simulated inspector, whose rule is printed.

    \b
    Examples:
      kernos demo waste --days 180
      kernos demo waste --days 60 --bins 80 --trucks 2 --replications 3 --json
    """
    import asyncio

    from kernos.kernel.identity import Principal, PrincipalKind
    from kernos.plugins.city.demo import DemoConfig, run_demo
    from kernos.plugins.city.scenario import SimulatedInspector

    config = DemoConfig(
        days=days,
        bins=bins,
        trucks=trucks,
        seed=seed,
        replications=replications,
        alpha=alpha,
        theta=theta,
        brackets=brackets,
    )
    from kernos.edge.errors import EdgeConfigError

    problems: list[str] = []
    if trucks is not None and trucks < 1:
        problems.append("--trucks must be at least 1")
    try:
        params = config.params()
    except EdgeConfigError as exc:
        raise InvalidInput(f"{exc} (check --bins)") from None
    if days <= params.warmup_days:
        problems.append(f"--days must exceed the warm-up of {params.warmup_days} days")
    if replications < 1:
        problems.append("--replications must be at least 1")
    if not 0 < alpha < 1 or not 0 < theta < 1:
        problems.append("--alpha and --theta must be in (0, 1)")
    if problems:
        raise InvalidInput("; ".join(problems))
    inspector = SimulatedInspector(
        principal=Principal(tenant="default", name="inspector", kind=PrincipalKind.PERSON),
        threshold=config.inspector_threshold,
        delay_min=config.inspector_delay_min,
    )
    if not as_json:
        click.echo(f"Simulated inspector: {inspector.rule}.", err=True)
    with click.progressbar(
        length=days * replications, label="Kernos arm (days)", file=sys.stderr
    ) as bar:
        try:
            result = asyncio.run(run_demo(config, on_day=lambda _day: bar.update(1)))
        except ModuleNotFoundError as exc:
            raise KernosError(
                f"kernos demo waste needs the 'routing' and 'hazard' extras ({exc.name} is "
                "missing): pip install 'kernos[routing,hazard]'"
            ) from None
    result["inspector"] = inspector.rule
    if as_json:
        from kernos.kernel.cli.output import print_json

        print_json(result)
        return
    cfg = result["config"]
    click.echo(
        f"{cfg['bins']} bins, {cfg['trucks']} truck(s), {cfg['days']} days "
        f"({cfg['warmup_days']} warm-up days not counted), seeds {cfg['seeds']}, "
        f"city seed {cfg['city_seed']}"
    )
    _table(result)
    click.echo(f"Simulated inspector: {inspector.rule}.")
    click.echo(f"Total wall time {result['wall_s']:.1f} s (arms run side by side).")
