"""Configuration: defaults, sources, and an error that names the key for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import ConfigError, Settings, broker_credentials, load_settings

EXAMPLE = Path(__file__).parents[2] / "config" / "collector.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return path


def error_of(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return str(info.value)


def test_the_example_file_is_valid_and_equals_the_defaults() -> None:
    assert load_settings(EXAMPLE, {}) == Settings()


def test_defaults_are_gates_production_endpoints() -> None:
    settings = load_settings(None, {})
    assert settings.gate.rest_url == "https://api.gateio.ws/api/v4"
    assert settings.gate.ws_url == "wss://ws.gate.com/v4/ws/unified"
    assert settings.gate.currencies == ["!all"]
    assert (settings.accounts.shard_index, settings.accounts.shard_count) == (0, 1)
    assert settings.influx.batch_size == 5000
    assert settings.influx.flush_interval == 1.0


def test_unknown_key_names_its_full_path_and_suggests_the_right_one(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[influx]\nbatchsize = 10\n"))
    assert "influx.batchsize" in message
    assert "unknown key" in message
    assert "'batch_size'" in message


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[influxdb]\nurl = 'http://x'\n"))
    assert "influxdb: unknown key" in message
    assert "'influx'" in message


def test_wrong_type_names_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[influx]\nbatch_size = 'lots'\n"))
    assert "influx.batch_size" in message
    assert "'lots'" in message
    assert "integer" in message


def test_duration_with_a_unit_says_durations_are_seconds(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[influx]\nflush_interval = '1s'\n"))
    assert "influx.flush_interval" in message
    assert "'1s'" in message
    assert "seconds" in message


def test_out_of_range_value_names_the_bound(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[influx]\nbatch_size = 0\n"))
    assert "influx.batch_size" in message
    assert "greater than 0" in message


def test_bad_choice_lists_the_choices(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[influx]\napi = 'v3'\n"))
    assert "influx.api" in message
    assert "'v1'" in message and "'v2'" in message


@pytest.mark.parametrize("shard", ["1", "2/2", "a/b", "0/0", "-1/3"])
def test_bad_shard_names_the_form(tmp_path: Path, shard: str) -> None:
    message = error_of(write(tmp_path, f"[accounts]\nshard = '{shard}'\n"))
    assert "accounts.shard" in message
    assert "i/N" in message or "0 <= i < N" in message


def test_bad_url_scheme_is_explained(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[gate]\nws_url = 'https://ws.gate.io/v4/ws/unified'\n"))
    assert "gate.ws_url" in message
    assert "wss://" in message


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[gate\n")
    message = error_of(path)
    assert str(path) in message and "TOML" in message


def test_missing_file_says_so(tmp_path: Path) -> None:
    assert "does not exist" in error_of(tmp_path / "nope.toml")


def test_secrets_come_from_the_environment() -> None:
    settings = load_settings(
        None,
        {
            "GATE_API_KEY": "k1",
            "GATE_API_SECRET": "s1",
            "GATE_COLLECTOR_MASTER_KEY": "m1",
            "INFLUX_TOKEN": "t1",
        },
    )
    creds = broker_credentials(settings)
    assert (creds.key, creds.secret) == ("k1", "s1")
    assert settings.state.master_key is not None
    assert settings.state.master_key.get_secret_value() == "m1"
    assert settings.influx.token is not None
    assert settings.influx.token.get_secret_value() == "t1"


def test_secrets_come_from_the_credentials_directory(tmp_path: Path) -> None:
    creds_dir = tmp_path / "creds"
    creds_dir.mkdir()
    (creds_dir / "gate-api-key").write_text("filekey\n")
    (creds_dir / "gate-api-secret").write_text("filesecret\n")
    (creds_dir / "master-key").write_text("filemaster\n")
    settings = load_settings(None, {"CREDENTIALS_DIRECTORY": str(creds_dir)})
    creds = broker_credentials(settings)
    assert (creds.key, creds.secret) == ("filekey", "filesecret")
    assert settings.state.master_key is not None
    assert settings.state.master_key.get_secret_value() == "filemaster"


def test_environment_wins_over_file_and_credentials(tmp_path: Path) -> None:
    creds_dir = tmp_path / "creds"
    creds_dir.mkdir()
    (creds_dir / "gate-api-secret").write_text("from-file")
    path = write(tmp_path, "[gate]\napi_key = 'toml-key'\napi_secret = 'toml-secret'\n")
    settings = load_settings(
        path, {"CREDENTIALS_DIRECTORY": str(creds_dir), "GATE_API_KEY": "env-key"}
    )
    creds = broker_credentials(settings)
    assert (creds.key, creds.secret) == ("env-key", "from-file")


def test_any_key_can_be_overridden_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, "[influx]\nbatch_size = 10\n"),
        {
            "GATE_COLLECTOR__INFLUX__BATCH_SIZE": "250",
            "GATE_COLLECTOR__INFLUX__URL": "http://influx:8086",
            "GATE_COLLECTOR__GATE__CURRENCIES": '["BTC", "USDT"]',
        },
    )
    assert settings.influx.batch_size == 250
    assert settings.influx.url == "http://influx:8086"
    assert settings.gate.currencies == ["BTC", "USDT"]


def test_unknown_environment_override_names_the_variable() -> None:
    message = error_of(None, {"GATE_COLLECTOR__INFLUX__BATCHSIZE": "1"})
    assert "influx.batchsize" in message and "'batch_size'" in message


def test_malformed_environment_override_names_the_variable() -> None:
    message = error_of(None, {"GATE_COLLECTOR__INFLUX": "1"})
    assert "GATE_COLLECTOR__INFLUX" in message and "<SECTION>__<KEY>" in message


def test_missing_broker_secret_names_every_place_it_may_come_from() -> None:
    settings = load_settings(None, {"GATE_API_KEY": "k"})
    with pytest.raises(ConfigError) as info:
        broker_credentials(settings)
    message = str(info.value)
    assert "gate.api_secret" in message
    assert "GATE_API_SECRET" in message and "gate-api-secret" in message


def test_secrets_never_print_in_repr_or_errors(tmp_path: Path) -> None:
    settings = load_settings(
        None, {"GATE_API_SECRET": "hunter2-secret", "INFLUX_TOKEN": "tok-secret-9"}
    )
    assert "hunter2-secret" not in repr(settings)
    assert "tok-secret-9" not in repr(settings)
    assert "hunter2-secret" not in str(settings.gate)
    # A secret given with the wrong type: the error names the key, not the value.
    message = error_of(write(tmp_path, "[gate]\napi_secret = 12345678987654321\n"))
    assert "gate.api_secret" in message
    assert "12345678987654321" not in message
