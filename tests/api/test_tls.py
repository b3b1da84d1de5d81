"""HTTPS when the API is given a certificate and key; the CLI trusts its own kernel's."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kernos.kernel.errors import ConfigError, EssentialPluginError
from kernos.kernel.kernel import Kernel
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import read_admin_token
from tests.api.test_api import free_port
from tests.conftest import served_kernel


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kernos-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_the_api_serves_https_with_a_certificate(kernos_home: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    settings = load_settings(home=kernos_home, api_port=port, api_tls_cert=cert, api_tls_key=key)
    kernel = Kernel(settings, serve_api=True)
    await kernel.start()
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        token = read_admin_token(kernos_home)
        async with httpx.AsyncClient(verify=trust) as http:
            response = await http.get(
                f"https://127.0.0.1:{port}/v1/processes",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text
        async with httpx.AsyncClient() as untrusting:  # the system roots don't know it
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"https://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient() as plain:  # no TLS, no answer
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        await kernel.stop()


def test_the_cli_talks_https_to_its_kernel(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    home = tmp_path / "home"
    with served_kernel(home, api_tls_cert=str(cert), api_tls_key=str(key)) as kernel:
        result = kernel.kernos("ps", "--json")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("[") or result.stdout.strip().startswith("{")


def test_tls_settings_come_in_pairs_of_real_files(kernos_home: Path, tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ConfigError, match="TLS_CERT and KERNOS_API_TLS_KEY"):
        load_settings(home=kernos_home, api_tls_cert=cert)
    with pytest.raises(ConfigError, match="not a readable file"):
        load_settings(home=kernos_home, api_tls_cert=cert, api_tls_key=tmp_path / "missing.key")


async def test_a_key_that_does_not_match_is_a_clear_error(
    kernos_home: Path, tmp_path: Path
) -> None:
    cert, _ = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_key = self_signed(other)
    settings = load_settings(
        home=kernos_home, api_port=free_port(), api_tls_cert=cert, api_tls_key=wrong_key
    )
    kernel = Kernel(settings, serve_api=True)
    with pytest.raises(EssentialPluginError) as failure:
        await kernel.start()
    assert isinstance(failure.value.__cause__, ConfigError)
    assert "cannot serve HTTPS" in str(failure.value.__cause__)
    assert "KEY_VALUES_MISMATCH" in str(failure.value.__cause__)
