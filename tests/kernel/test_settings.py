"""Settings from overrides, environment and kernos.toml, and clear errors when they are wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernos.kernel.errors import ConfigError
from kernos.kernel.settings import load_settings


def test_defaults(kernos_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("KERNOS_API_PORT")  # the fixtures pick a free one for test kernels
    settings = load_settings()
    assert settings.home == kernos_home
    assert settings.api_port == 8787
    assert settings.load_plugins is None
    assert str(settings.db_url) == f"sqlite+aiosqlite:///{kernos_home}/kernos.db"
    assert settings.is_sqlite


def test_environment_beats_toml_beats_defaults(kernos_home: Path, monkeypatch) -> None:
    kernos_home.mkdir()
    (kernos_home / "kernos.toml").write_text(
        'api_port = 9000\nlog_level = "debug"\nllm_model = "tiny"\n'
    )
    monkeypatch.setenv("KERNOS_API_PORT", "9100")
    monkeypatch.setenv("KERNOS_LOAD_PLUGINS", "kernos-hello, sensors")
    settings = load_settings()
    assert settings.api_port == 9100
    assert settings.log_level == "DEBUG"
    assert settings.llm_model == "tiny"
    assert settings.load_plugins == ["kernos-hello", "sensors"]
    assert load_settings(api_port=9200).api_port == 9200


def test_postgres_urls_get_the_psycopg3_driver(kernos_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERNOS_DATABASE_URL", "postgresql://k:pw@db.internal/kernos")
    settings = load_settings()
    assert settings.db_url.drivername == "postgresql+psycopg"
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("KERNOS_API_PORT", "eighty", r"KERNOS_API_PORT: .*integer.*'eighty'"),
        ("KERNOS_API_PORT", "70000", r"KERNOS_API_PORT: .*less than or equal to 65535"),
        ("KERNOS_LOG_LEVEL", "loud", r"KERNOS_LOG_LEVEL: .*'DEBUG'.*'LOUD'"),
        (
            "KERNOS_DATABASE_URL",
            "mysql://x/y",
            r"KERNOS_DATABASE_URL: .*unsupported database 'mysql'",
        ),
        ("KERNOS_DATABASE_URL", "sqlite://", r"needs a file path"),
        ("KERNOS_DATABASE_URL", "not a url", r"not a database URL"),
    ],
)
def test_an_invalid_value_names_the_variable(
    kernos_home: Path, monkeypatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=expected):
        load_settings()


def test_an_unknown_toml_key_is_refused(kernos_home: Path) -> None:
    kernos_home.mkdir()
    (kernos_home / "kernos.toml").write_text("api_prot = 9000\n")
    with pytest.raises(ConfigError, match=r"kernos.toml: api_prot: unknown setting"):
        load_settings()


def test_invalid_toml_is_a_clear_error(kernos_home: Path) -> None:
    kernos_home.mkdir()
    (kernos_home / "kernos.toml").write_text("api_port = = 3\n")
    with pytest.raises(ConfigError, match=r"cannot read .*kernos.toml: invalid TOML .*line 1"):
        load_settings()


def test_unreadable_toml_is_a_clear_error(kernos_home: Path) -> None:
    # A directory where the file should be: unreadable even for root.
    (kernos_home / "kernos.toml").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"cannot read .*kernos.toml: Is a directory"):
        load_settings()


def test_secrets_never_appear_in_errors_or_repr(kernos_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERNOS_LLM_API_KEY", "sk-very-secret")
    settings = load_settings()
    assert settings.llm_api_key is not None
    assert settings.llm_api_key.get_secret_value() == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
    monkeypatch.setenv("KERNOS_API_PORT", "x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "sk-very-secret" not in str(info.value)


def test_toml_cannot_move_home(kernos_home: Path) -> None:
    kernos_home.mkdir()
    (kernos_home / "kernos.toml").write_text('home = "/elsewhere"\n')
    with pytest.raises(ConfigError, match="use KERNOS_HOME"):
        load_settings()


def test_a_misspelled_variable_is_reported(kernos_home: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("KERNOS_DATABSE_URL", "postgresql://x/y")
    load_settings()
    assert "ignoring unknown setting KERNOS_DATABSE_URL; did you mean KERNOS_DATABASE_URL?" in (
        caplog.text
    )


def test_database_url_values_are_never_echoed(kernos_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("KERNOS_DATABASE_URL", "mysql://u:hunter2@h/db")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_shown_urls_hide_passwords_in_the_query_too() -> None:
    from sqlalchemy.engine import make_url

    from kernos.kernel.settings import shown_url

    url = make_url("postgresql+psycopg://k:pw1@db/kernos?password=pw2&sslmode=require")
    shown = shown_url(url)
    assert "pw1" not in shown and "pw2" not in shown and "sslmode=require" in shown
