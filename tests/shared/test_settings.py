"""Settings come from KSCORE_* variables and fail loudly on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import Settings, parse_duration, parse_size


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.job_retention_s == 7 * 86400
    assert settings.max_model_bytes == 1024**3
    assert settings.local_model_dir == Path(".kscore/model-cache")


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "KSCORE_REDIS_URL": "redis://db:6380/2",
            "KSCORE_JOB_RETENTION": "12h",
            "KSCORE_MAX_MODEL_BYTES": "64MiB",
            "KSCORE_MODEL_CACHE_SIZE": "2",
            "KSCORE_PUBLIC_URL": "http://scoring.example:8080/",
            "KSCORE_LOG_LEVEL": "debug",
            "KSCORE_TF_THREADS": "1",
        }
    )
    assert settings.tf_threads == 1
    assert settings.redis_url == "redis://db:6380/2"
    assert settings.job_retention_s == 12 * 3600
    assert settings.max_model_bytes == 64 * 1024**2
    assert settings.model_cache_size == 2
    assert settings.public_url == "http://scoring.example:8080"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("var", "value", "phrase"),
    [
        ("KSCORE_REDIS_URL", "localhost:6379", "redis://"),
        ("KSCORE_JOB_RETENTION", "a week", "duration"),
        ("KSCORE_MAX_MODEL_BYTES", "lots", "size"),
        ("KSCORE_MODEL_CACHE_SIZE", "0", "at least 1"),
        ("KSCORE_MODEL_CACHE_SIZE", "two", "invalid literal"),
        ("KSCORE_KEY_PREFIX", "has space", "letters"),
        ("KSCORE_LOG_LEVEL", "loud", "DEBUG"),
        ("KSCORE_TF_THREADS", "-1", "at least 0"),
        ("KSCORE_AUTH", "off", "required, disabled"),
        ("KSCORE_TOKEN_SECRET", "short", "at least 32"),
        ("KSCORE_TOKEN_TTL", "20m", "under 1h"),
        ("KSCORE_METRICS_ACCESS", "public", "loopback, open"),
        ("KSCORE_DEFAULT_INSTANCE", "Team_A", "lowercase"),
    ],
)
def test_bad_values_fail_naming_the_variable(var: str, value: str, phrase: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({var: value})
    assert str(info.value).startswith(var)
    assert phrase in str(info.value)


def test_auth_settings() -> None:
    secret = "s3cret-" * 6
    settings = Settings.from_env(
        {
            "KSCORE_AUTH": "Disabled",
            "KSCORE_TOKEN_SECRET": secret,
            "KSCORE_TOKEN_TTL": "24h",
            "KSCORE_METRICS_ACCESS": "open",
        }
    )
    assert settings.auth == "disabled" and settings.metrics_access == "open"
    assert settings.token_secret == secret and settings.token_ttl_s == 86400
    assert secret not in repr(settings)  # a logged settings object never shows the secret
    assert Settings().auth == "required" and Settings().token_secret is None


def test_units() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("7d") == 604800
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("1GiB") == 1024**3


def test_dataset_settings() -> None:
    settings = Settings.from_env(
        {"KSCORE_MAX_DATASET_BYTES": "1GiB", "KSCORE_DATASET_RETENTION": "2d"}
    )
    assert settings.max_dataset_bytes == 1024**3 and settings.dataset_retention_s == 2 * 86400
    assert Settings().max_dataset_bytes == 4 * 1024**3
