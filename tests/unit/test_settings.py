"""Settings: defaults, parsing, one clear line per bad variable, secrets never shown."""

from __future__ import annotations

import re

import pytest

from dataflow.errors import SettingsError
from dataflow.settings import ENV_VARS, SPECS, Settings, describe_settings


def test_defaults_match_the_documented_values() -> None:
    """An empty environment gives the documented defaults."""
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.input_topic, settings.output_topic, settings.dlq_topic,
            settings.counts_topic) == ("user-login", "processed-user-login", "user-login-dlq",
                                       "user-login-counts")
    assert settings.count_fields == ("device_type", "locale")
    assert settings.window_seconds == 60


def test_values_are_parsed_and_normalised() -> None:
    """Lists, booleans and numbers are parsed; locales are upper-cased."""
    settings = Settings.from_env({
        "EXCLUDED_LOCALES": "ru, by ,", "STOP_AT_END": "yes", "WINDOW_SECONDS": "30",
        "COUNT_FIELDS": "locale,app_version,locale", "KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2",
    })
    assert settings.excluded_locales == frozenset({"RU", "BY"})
    assert settings.stop_at_end is True
    assert settings.window_seconds == 30
    assert settings.count_fields == ("locale", "app_version")
    assert settings.bootstrap_servers == "a:1,b:2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WINDOW_SECONDS": "0"}, "WINDOW_SECONDS: 0 is below the minimum of 1"),
        ({"WINDOW_SECONDS": "ten"}, "WINDOW_SECONDS: 'ten' is not a whole number"),
        ({"STOP_AT_END": "maybe"}, "STOP_AT_END: 'maybe' is not a boolean (true/false)"),
        ({"INPUT_TOPIC": "bad topic"},
         "INPUT_TOPIC: 'bad topic' is not a valid Kafka topic name "
         "(letters, digits, '.', '_', '-')"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"},
         "KAFKA_BOOTSTRAP_SERVERS: 'localhost' is not host:port"),
        ({"COUNT_FIELDS": "colour"},
         "COUNT_FIELDS: unknown field(s) colour; choose from device_type, locale, app_version, "
         "ip_version, user_id, device_id"),
        ({"STARTING_OFFSET": "middle"},
         "STARTING_OFFSET: 'middle' is not one of earliest, latest, committed"),
        ({"OUTPUT_TOPIC": "user-login"},
         "INPUT_TOPIC: must differ from the output, dead-letter, counts and late topics "
         "(the job would read its own output)"),
        ({"SOURCE_BATCH_SIZE": "1000001"},
         "SOURCE_BATCH_SIZE: 1000001 is above the maximum of 1,000,000 "
         "(librdkafka's consume() limit)"),
        ({"DLQ_TOPIC": "processed-user-login"},
         "DLQ_TOPIC: must differ from OUTPUT_TOPIC (both 'processed-user-login'); each kind "
         "of output needs its own topic"),
        ({"LATE_TOPIC": "user-login-counts"},
         "LATE_TOPIC: must differ from COUNTS_TOPIC (both 'user-login-counts'); each kind "
         "of output needs its own topic"),
        ({"COUNTS_TOPIC": "x", "LATE_TOPIC": "x", "OUTPUT_TOPIC": "x"},
         "COUNTS_TOPIC: must differ from OUTPUT_TOPIC (both 'x'); each kind of output needs "
         "its own topic; LATE_TOPIC: must differ from OUTPUT_TOPIC (both 'x'); each kind of "
         "output needs its own topic"),
        ({"LATE_TOPIC": "user-login"},
         "INPUT_TOPIC: must differ from the output, dead-letter, counts and late topics "
         "(the job would read its own output)"),
        ({"KAFKA_CONFIG_BOOTSTRAP_SERVERS": "x:1"},
         "KAFKA_CONFIG_BOOTSTRAP_SERVERS: set KAFKA_BOOTSTRAP_SERVERS instead"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    """A bad value raises SettingsError with one line naming the variable."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_kafka_config_passes_through_and_secrets_are_masked() -> None:
    """KAFKA_CONFIG_* becomes client properties; secret values never appear in repr."""
    settings = Settings.from_env({
        "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_CONFIG_SASL_PASSWORD": "hunter2",
    })
    assert settings.kafka_config == {"security.protocol": "SASL_SSL", "sasl.password": "hunter2"}
    assert "hunter2" not in repr(settings)
    assert settings.describe()["kafka_config"]["sasl.password"] == "***"


def test_largest_source_batch_size_is_accepted() -> None:
    """SOURCE_BATCH_SIZE=1,000,000, the most consume() takes, passes the check."""
    assert Settings.from_env({"SOURCE_BATCH_SIZE": "1000000"}).source_batch_size == 1_000_000


@pytest.mark.parametrize("prop", ["SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_MECHANISMS",
                                  "CLIENT_ID", "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "ACKS",
                                  "LINGER_MS", "REQUEST_TIMEOUT_MS", "SSL_CA_LOCATION"])
def test_harmless_kafka_properties_are_shown(prop: str) -> None:
    """Properties on the allow-list (protocol, mechanism, client id, tuning) are printed."""
    settings = Settings.from_env({f"KAFKA_CONFIG_{prop}": "visible-value"})
    (shown,) = settings.describe()["kafka_config"].values()
    assert shown == "visible-value"


@pytest.mark.parametrize("prop", [
    "SASL_OAUTHBEARER_ASSERTION_PRIVATE_KEY_PASSPHRASE", "SASL_OAUTHBEARER_ASSERTION_PRIVATE_KEY",
    "SASL_OAUTHBEARER_CLIENT_SECRET", "SASL_OAUTHBEARER_CONFIG", "SASL_PASSWORD",
    "SASL_USERNAME", "SSL_KEY_PASSWORD", "SSL_KEY_PEM", "SSL_KEYSTORE_PASSWORD",
    "SSL_CERTIFICATE_PEM", "SASL_JAAS_CONFIG", "SOME_FUTURE_PROPERTY",
])
def test_every_other_kafka_property_is_masked(prop: str) -> None:
    """Anything not on the allow-list, known secret or not, shows as *** in describe and repr."""
    settings = Settings.from_env({f"KAFKA_CONFIG_{prop}": "hunter2-value"})
    (shown,) = settings.describe()["kafka_config"].values()
    assert shown == "***"
    assert "hunter2-value" not in repr(settings)


def test_settings_table_lists_every_variable() -> None:
    """The --help/README table names every variable with its default."""
    table = describe_settings()
    assert all(spec.env in table for spec in SPECS)
    assert len(ENV_VARS) == len(SPECS)


def test_readme_documents_every_setting_with_its_default() -> None:
    """Each variable has a README table row showing the default the code uses."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for spec in SPECS:
        shown = f"`{spec.default}`" if spec.default else "(empty)"
        assert f"| `{spec.env}` | {shown} |" in readme, spec.env


@pytest.mark.parametrize(("raw", "value"), [("auto", None), ("0", 0), ("10", 10)])
def test_progress_seconds_is_auto_or_whole_seconds(raw: str, value: int | None) -> None:
    """PROGRESS_SECONDS: auto (by the log format), 0 for off, or seconds."""
    assert Settings.from_env({"PROGRESS_SECONDS": raw}).progress_seconds == value


@pytest.mark.parametrize(("raw", "message"), [
    ("ten", "PROGRESS_SECONDS: 'ten' is not a whole number"),
    ("-1", "PROGRESS_SECONDS: -1 is below the minimum of 0"),
    ("86401", "PROGRESS_SECONDS: 86401 is above the maximum of 86,400 (a day)"),
])
def test_a_bad_progress_seconds_is_one_message(raw: str, message: str) -> None:
    """A bad PROGRESS_SECONDS names the variable and the problem."""
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}$"):
        Settings.from_env({"PROGRESS_SECONDS": raw})
