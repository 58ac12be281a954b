import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from anycompany.env import database_from_url, env_bool, env_int, env_list

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-production-like-secret-key-with-plenty-of-entropy-7f3a9c2e1b8d4f6a0e5c",
    "ALLOWED_HOSTS": "support.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://support.example.com",
    "DATABASE_URL": "postgres://app:secret@db.internal:5432/anycompany?sslmode=require",
    "REDIS_URL": "rediss://cache.internal:6379/0",
    "AWS_STORAGE_BUCKET_NAME": "anycompany-support-assets",
    "CHAT_MODEL": "bedrock",
    "AWS_REGION": "us-east-1",
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION and not k.startswith(("DB_", "DATABASE_", "DJANGO_", "SECURE_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_with_production_values_reports_no_warnings() -> None:
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_a_missing_secret_key_is_named_at_start_up() -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "Set the environment variable SECRET_KEY." in result.stderr


def test_earlier_secret_keys_are_read_from_the_environment_and_checked_like_the_key() -> None:
    earlier = "an-earlier-production-key-with-plenty-of-entropy-0c4e7a1f9b3d5e8a2c6f"
    check = ("check", "--deploy", "--fail-level", "WARNING")

    strong = run_manage(*check, env={**PRODUCTION, "SECRET_KEY_FALLBACKS": earlier})
    weak = run_manage(*check, env={**PRODUCTION, "SECRET_KEY_FALLBACKS": f"{earlier}, short"})

    assert strong.returncode == 0, strong.stdout + strong.stderr
    assert weak.returncode != 0
    assert "SECRET_KEY_FALLBACKS[1]" in weak.stdout + weak.stderr


def test_a_bad_boolean_is_named_at_start_up() -> None:
    result = run_manage("check", env={**PRODUCTION, "DEBUG": "maybe"})
    assert "DEBUG must be true or false (got 'maybe')." in result.stderr


def test_a_bad_prompt_caching_choice_is_named_at_start_up() -> None:
    result = run_manage("check", env={**PRODUCTION, "BEDROCK_PROMPT_CACHING": "maybe"})
    assert result.returncode != 0
    assert "BEDROCK_PROMPT_CACHING must be auto or true or false" in result.stderr


def test_a_bad_request_validation_switch_is_named_at_start_up() -> None:
    result = run_manage("check", env={**PRODUCTION, "BEDROCK_VALIDATE_REQUESTS": "sometimes"})
    assert result.returncode != 0
    assert "BEDROCK_VALIDATE_REQUESTS must be true or false (got 'sometimes')." in result.stderr


def test_demo_sign_in_is_refused_in_production() -> None:
    result = run_manage("check", env={**PRODUCTION, "DEMO_LOGIN_ENABLED": "true"})
    assert "DEMO_LOGIN_ENABLED may only be true when DEBUG is true." in result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("off", False), ("0", False)]
)
def test_env_bool_accepts_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG", not expected) is expected


def test_env_int_names_the_variable_and_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_COUNT", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT must be a whole number"):
        env_int("SOME_COUNT", 1)
    monkeypatch.setenv("SOME_COUNT", "0")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT must be at least 1"):
        env_int("SOME_COUNT", 1, minimum=1)


def test_env_list_splits_and_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_HOSTS", " a.example.com, ,b.example.com ")
    assert env_list("SOME_HOSTS") == ["a.example.com", "b.example.com"]


def test_database_urls_for_postgres_and_sqlite() -> None:
    pg = database_from_url("DATABASE_URL", "postgres://app:p%40ss@db:6543/shop?sslmode=require")
    assert pg == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "app",
        "PASSWORD": "p@ss",
        "HOST": "db",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }
    assert database_from_url("DATABASE_URL", "sqlite:///db.sqlite3")["NAME"] == "db.sqlite3"
    with pytest.raises(
        ImproperlyConfigured, match="DATABASE_URL must start with sqlite:// or postgres://"
    ):
        database_from_url("DATABASE_URL", "mysql://db/shop")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL needs a database name"):
        database_from_url("DATABASE_URL", "postgres://db:5432/")


DATABASE_SETTINGS = (
    "import json; from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default'], default=str))"
)


def test_postgres_gets_a_pool_without_health_check_queries_by_default() -> None:
    result = run_manage("shell", "-c", DATABASE_SETTINGS, env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout.strip().splitlines()[-1])

    assert database["ENGINE"] == "anycompany.postgres"
    assert database["OPTIONS"]["pool"]["max_size"] == 10
    assert database["CONN_MAX_AGE"] == 0
    assert not database.get("CONN_HEALTH_CHECKS")


def test_a_pool_size_of_zero_keeps_one_persistent_connection_per_thread() -> None:
    env = {**PRODUCTION, "DATABASE_POOL_SIZE": "0"}
    result = run_manage("shell", "-c", DATABASE_SETTINGS, env=env)
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout.strip().splitlines()[-1])

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert "pool" not in database["OPTIONS"]
    assert database["CONN_HEALTH_CHECKS"] is True


def test_sqlite_has_no_pool() -> None:
    env = {**PRODUCTION, "DATABASE_URL": "sqlite:///db.sqlite3"}
    result = run_manage("shell", "-c", DATABASE_SETTINGS, env=env)
    assert result.returncode == 0, result.stderr
    database = json.loads(result.stdout.strip().splitlines()[-1])

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert "pool" not in database["OPTIONS"]


def test_manage_py_test_runs_the_pytest_suite() -> None:
    result = run_manage(
        "test",
        "tests/anycompany/test_settings.py::test_env_list_splits_and_trims",
        env={"DEBUG": "true"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
