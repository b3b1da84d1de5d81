"""``kernos models``: an API client of a real ``kernos serve``, with the documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kernos.kernel.cli.models import parse_provenance
from kernos.kernel.errors import InvalidInput
from tests.conftest import served_kernel


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_provenance_options_are_key_value_pairs() -> None:
    assert parse_provenance(("source=hf:org/m", "run=42", "note=a=b")) == {
        "source": "hf:org/m",
        "run": "42",
        "note": "a=b",
    }
    try:
        parse_provenance(("oops",))
    except InvalidInput as exc:
        assert "KEY=VALUE" in str(exc)
    else:
        raise AssertionError("a provenance option without '=' was accepted")


def test_models_commands_are_api_clients_with_exit_codes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys = tmp_path / "keys"
    keys.mkdir()
    key = Ed25519PrivateKey.generate()
    (keys / "models.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (keys / "models.pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / "v1.onnx").write_bytes(os.urandom(4096))
    (work / "v2.onnx").write_bytes(os.urandom(4096))
    trusted = str(keys / "models.pub.pem")
    with served_kernel(home, model_trusted_keys=trusted) as served:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return served.kernos("models", *args, cwd=work)

        # Relative paths are made absolute here; the kernel reads the file and signs.
        signed = run(
            "register", "v1.onnx", "--name", "hazard", "--version", "1", "--kind", "onnx",
            "--sign", str(keys / "models.pem"), "--provenance", "source=test", "--json",
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        model = json.loads(signed.stdout)
        assert model["signed"] and model["path"] == str(work / "v1.onnx")
        assert model["provenance"] == {"source": "test"}
        plain = run(
            "register", "v2.onnx", "--name", "hazard", "--version", "2", "--price-in", "0.2",
        )  # fmt: skip
        assert plain.returncode == 0 and "Registered hazard@2" in plain.stdout, plain.stderr
        again = run("register", "v2.onnx", "--name", "hazard", "--version", "2")
        assert again.returncode == 2 and "already registered" in again.stderr

        listed = run("list", "--json")
        assert listed.returncode == 0
        assert [m["version"] for m in json.loads(listed.stdout)] == ["1", "2"]
        table = run("list")
        assert table.stdout.splitlines()[0].split()[:4] == ["NAME", "VERSION", "KIND", "STAGE"]

        assert run("verify", "hazard@1").returncode == 0
        assert run("promote", "hazard@1", "--stage", "live").returncode == 0
        assert run("promote", "hazard@2", "--stage", "canary:120").returncode == 2
        data = bytearray((work / "v2.onnx").read_bytes())
        data[0] ^= 0x01
        (work / "v2.onnx").write_bytes(bytes(data))
        damaged = run("verify", "hazard@2", "--json")
        assert damaged.returncode == 1
        assert json.loads(damaged.stdout)["problems"] == ["bytes_changed"]
        refused = run("promote", "hazard@2", "--stage", "live")
        assert refused.returncode == 1 and "bytes_changed" in refused.stderr
        assert run("verify", "ghost").returncode == 2
        assert run("verify", "hazard@9").returncode == 2
        nothing = run("rollback", "hazard")
        assert nothing.returncode == 2 and "roll back" in nothing.stderr

        (work / "v3.onnx").write_bytes(os.urandom(512))
        assert run("register", "v3.onnx", "--name", "hazard", "--version", "3").returncode == 0
        assert run("promote", "hazard@3", "--stage", "live").returncode == 0
        back = run("rollback", "hazard")
        assert back.returncode == 0 and "1 is live" in back.stdout, back.stderr
        final = {m["version"]: m["deployment"] for m in json.loads(run("list", "--json").stdout)}
        assert final == {"1": "live", "2": "registered", "3": "retired"}
