"""``kernos models register|list|verify|promote|rollback|export``: the model registry, through
the API.

The kernel reads the artifact and the signing key, so their paths are paths on the kernel's
machine; relative paths are made absolute against the current directory first (right when the
kernel runs on this machine, as ``kernos up`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from kernos.kernel.cli.output import print_json, print_table
from kernos.kernel.cli.remote import age, connect
from kernos.kernel.errors import EXIT_CHECK_FAILED, InvalidInput
from kernos.kernel.model_records import ModelKind, parse_ref


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def parse_provenance(items: tuple[str, ...]) -> dict[str, str]:
    """``--provenance k=v`` options as a dict; ``InvalidInput`` for one without ``=``."""
    details: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidInput(f"--provenance {item!r} must be KEY=VALUE, as source=hf:org/model")
        details[key.strip()] = value
    return details


def _path(name: str) -> str:
    return f"/v1/models/{quote(name, safe='')}"


@click.group()
def models() -> None:
    """Register, list, verify, promote and roll back model versions (LLMs, ONNX, any artifact).

    \b
    Examples:
      kernos models register ./classifier.onnx --name hazard --version 1.2 --kind onnx \\
          --sign ~/keys/models.pem --provenance source=train-run-42
      kernos models verify hazard@1.2
      kernos models promote hazard@1.2 --stage canary:10
      kernos models promote hazard@1.2 --stage live
      kernos models rollback hazard
      kernos models export hazard@1 --repository /srv/models
    """


@models.command()
@click.argument("path", metavar="PATH")
@click.option("--name", required=True, help="Model name.")
@click.option("--version", "version", required=True, help="Version of this artifact.")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in ModelKind]),
    default=ModelKind.OTHER.value,
    show_default=True,
    help="What the artifact is.",
)
@click.option(
    "--sign",
    "signing_key",
    metavar="KEY",
    help="Ed25519 private key (PEM) the kernel signs the manifest with; it must be trusted.",
)
@click.option("--price-in", type=float, help="Price per 1k input tokens.")
@click.option("--price-out", type=float, help="Price per 1k output tokens.")
@click.option(
    "--provenance", "provenance", multiple=True, metavar="KEY=VALUE", help="Where it came from."
)
@click.option("--copy", "copy", is_flag=True, help="Keep a copy under KERNOS_HOME/models.")
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
def register(
    path: str,
    name: str,
    version: str,
    kind: str,
    signing_key: str | None,
    price_in: float | None,
    price_out: float | None,
    provenance: tuple[str, ...],
    copy: bool,
    as_json: bool,
) -> None:
    """Register the artifact at PATH as NAME@VERSION (hashed, and signed with --sign).

    PATH and KEY are read by the kernel: paths on its machine.
    """
    body: dict[str, Any] = {
        "path": _absolute(path),
        "name": name,
        "version": version,
        "kind": kind,
        "provenance": parse_provenance(provenance),
        "price_per_1k_input": price_in,
        "price_per_1k_output": price_out,
        "signing_key": _absolute(signing_key) if signing_key else None,
        "copy": copy,
    }
    with connect() as client:
        model = client.call("POST", "/v1/models", json=body)
    if as_json:
        print_json(model)
        return
    signed = f", signed by {model['key_fingerprint'][:16]}…" if model["signed"] else ""
    click.echo(
        f"Registered {model['name']}@{model['version']} ({model['kind']}, {model['size']} bytes, "
        f"sha256 {model['sha256'][:16]}…{signed})"
    )


@models.command("list")
@click.option("--name", help="Only this model's versions.")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
def list_models(name: str | None, as_json: bool) -> None:
    """List registered model versions."""
    with connect() as client:
        found = client.call("GET", "/v1/models", params={"name": name})["data"]
    if as_json:
        print_json(found)
        return
    rows = [
        (
            m["name"],
            m["version"],
            m["kind"],
            m["deployment"],
            m["sha256"][:12],
            "yes" if m["signed"] else "no",
            age(m["created_at"]),
        )
        for m in found
    ]
    print_table(rows, ["NAME", "VERSION", "KIND", "STAGE", "SHA256", "SIGNED", "AGE"])


@models.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Re-hash a version's artifact and check its signature (default: the live version).

    Exit 0 when it matches, 1 when the bytes or the signature no longer do, 2 if unknown.
    """
    name, version = parse_ref(ref)
    with connect() as client:
        result = client.call("POST", f"{_path(name)}/verify", json={"version": version})
    if as_json:
        print_json(result)
    elif result["ok"]:
        signed = ", signature ok" if result["signed"] else ", unsigned"
        click.echo(
            f"{result['name']}@{result['version']}: ok "
            f"(sha256 {result['expected_sha256'][:16]}…{signed})"
        )
    else:
        problems = ", ".join(result["problems"])
        click.echo(f"{result['name']}@{result['version']}: FAILED ({problems})")
        click.echo(f"kernos: error: {result['detail']}", err=True)
    if not result["ok"]:
        ctx.exit(EXIT_CHECK_FAILED)


@models.command()
@click.argument("ref", metavar="NAME@VERSION")
@click.option(
    "--stage", required=True, metavar="STAGE", help="shadow, canary:PCT (1-99), live or retired."
)
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
def promote(ref: str, stage: str, as_json: bool) -> None:
    """Move NAME@VERSION to a stage; it is verified (and content-checked) first."""
    name, version = parse_ref(ref)
    if version is None:
        raise InvalidInput(f"{ref!r}: give NAME@VERSION")
    with connect() as client:
        model = client.call(
            "POST", f"{_path(name)}/promote", json={"version": version, "stage": stage}
        )
    if as_json:
        print_json(model)
    else:
        click.echo(f"{model['name']}@{model['version']} is now {model['deployment']}")


@models.command()
@click.argument("name", metavar="NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the version now live as JSON.")
def rollback(name: str, as_json: bool) -> None:
    """Make NAME's previous live version live again and retire the current one."""
    parse_ref(name)
    with connect() as client:
        model = client.call("POST", f"{_path(name)}/rollback")
    if as_json:
        print_json(model)
    else:
        click.echo(f"{model['name']} rolled back: {model['version']} is live")


@models.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option(
    "--repository",
    required=True,
    metavar="DIR",
    help="Model repository to write into (a path on the kernel's machine).",
)
@click.option(
    "--implementation",
    metavar="MODULE.CLASS",
    help="MLServer runtime for model-settings.json (default kernos_mlserver_onnx.OnnxModel).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export(ref: str, repository: str, implementation: str | None, as_json: bool) -> None:
    """Write a verified version (default: the live one) into a KServe v2 model repository:
    DIR/NAME/VERSION/model.onnx, DIR/NAME/config.pbtxt (Triton) and
    DIR/NAME/VERSION/model-settings.json (MLServer).

    Exit 1 when the version fails verification (nothing is written), 2 if unknown.
    """
    name, version = parse_ref(ref)
    body: dict[str, Any] = {"version": version, "repository": _absolute(repository)}
    if implementation:
        body["implementation"] = implementation
    with connect() as client:
        result = client.call("POST", f"{_path(name)}/export", json=body)
    if as_json:
        print_json(result)
        return
    click.echo(
        f"Exported {result['name']}@{result['version']} (sha256 {result['sha256'][:16]}…) "
        f"to {result['repository']}"
    )
    if not result["triton_ready"]:
        click.echo(
            f"note: Triton loads only numeric version folders; {result['version']!r} is served "
            "by MLServer but not by Triton",
            err=True,
        )
