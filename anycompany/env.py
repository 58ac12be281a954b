"""Typed readers for settings that come from the environment.

Each helper fails loudly, naming the variable, so a typo in a deployment shows up at start-up
instead of as a strange behaviour hours later.
"""

import os
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Set the environment variable {name}.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r}).")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number (got {raw!r}).") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value}).")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number (got {raw!r}).") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value}).")
    return value


def env_decimal(name: str, default: Decimal, *, minimum: Decimal | None = None) -> Decimal:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number (got {raw!r}).") from None
    if not value.is_finite():
        raise ImproperlyConfigured(f"{name} must be a finite number (got {raw!r}).")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value}).")
    return value


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    raw = os.environ.get(name)
    value = (raw or "").strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be {' or '.join(choices)} (got {raw!r}).")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(name: str, url: str) -> dict[str, object]:
    """Turns ``DATABASE_URL`` into a ``DATABASES['default']`` entry.

    Supported: ``sqlite:///relative/path.sqlite3``, ``sqlite:////absolute/path``,
    ``postgres://user:password@host:port/dbname?sslmode=require``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ImproperlyConfigured(f"{name} needs a file path, e.g. sqlite:///db.sqlite3.")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    if scheme in {"postgres", "postgresql", "pgsql"}:
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ImproperlyConfigured(
                f"{name} needs a database name, e.g. postgres://user@host:5432/anycompany."
            )
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has an invalid port.") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": dbname,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"{name} must start with sqlite:// or postgres:// (got scheme {scheme or 'none'!r})."
    )


COGNITO_VARIABLES = (
    "COGNITO_REGION",
    "COGNITO_USER_POOL_ID",
    "COGNITO_CLIENT_ID",
    "COGNITO_CLIENT_SECRET",
    "COGNITO_DOMAIN",
)


def database_from_env(base_dir: Path, *, pool_size: int) -> dict[str, object]:
    """``DATABASES["default"]`` from ``DATABASE_URL``, the ``DB_*`` variables or SQLite."""
    url = env_str("DATABASE_URL", "")
    if url:
        config = database_from_url("DATABASE_URL", url)
    elif env_str("DB_HOST", ""):
        # On ECS the RDS secret's fields arrive as separate variables; the password never
        # appears in a task definition's plain environment.
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": env_str("DB_HOST"),
            "PORT": str(env_int("DB_PORT", 5432, minimum=1)),
            "NAME": env_str("DB_NAME", "anycompany"),
            "USER": env_str("DB_USER"),
            "PASSWORD": env_str("DB_PASSWORD"),
            "OPTIONS": {"sslmode": env_str("DB_SSLMODE", "require")},
        }
    else:
        config = database_from_url("DATABASE_URL", "sqlite:///db.sqlite3")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        name = Path(str(config["NAME"]))
        config["NAME"] = name if name.is_absolute() else base_dir / name
        # SQLite serialises writers; a busy timeout turns "database is locked" into a short wait.
        config["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    else:
        options = {
            # libpq waits forever for an unanswered connect; readiness and requests should fail.
            "connect_timeout": 5,
            **cast(dict[str, object], config["OPTIONS"]),
        }
        if pool_size:
            # One psycopg pool per process, shared by requests, short socket queries and turn
            # workers: the process never holds more than pool_size connections, however many
            # turns run (anycompany.dbpool checks it against the server at start-up). A
            # connection goes back to the pool when Django closes it: no per-use health check;
            # the backend drops connections the server closed without a round trip.
            config["ENGINE"] = "anycompany.postgres"
            config["CONN_MAX_AGE"] = 0
            options["pool"] = {
                "min_size": min(2, pool_size),
                "max_size": pool_size,
                # A turn waiting this long for a connection fails with a "try again" notice.
                "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1),
                # A connection broken by a database restart is replaced, not handed out.
                "max_lifetime": 600,
            }
        else:
            # Persistent connections, one per thread that uses the database.
            config["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
            config["CONN_HEALTH_CHECKS"] = True
        config["OPTIONS"] = options
        # ChannelsLiveServerTestCase and pytest-django agree on the test database name.
        config["TEST"] = {"NAME": f"test_{config['NAME']}"}
    return config


def cognito_from_env() -> dict[str, str] | None:
    """The Cognito sign-in variables, checked and normalised; None when COGNITO_CLIENT_ID is unset.

    Either all of ``COGNITO_VARIABLES`` are set or none is.
    """
    values = {name: env_str(name, "").strip() for name in COGNITO_VARIABLES}
    if not values["COGNITO_CLIENT_ID"]:
        for name, value in values.items():
            if value:
                raise ImproperlyConfigured(
                    f"{name} is set but COGNITO_CLIENT_ID is not: set all of "
                    f"{', '.join(COGNITO_VARIABLES)} to sign in through Cognito, or none."
                )
        return None
    for name, value in values.items():
        if not value:
            raise ImproperlyConfigured(
                f"Set the environment variable {name} (COGNITO_CLIENT_ID is set, so sign-in "
                "goes through Cognito)."
            )
    region, pool = values["COGNITO_REGION"], values["COGNITO_USER_POOL_ID"]
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", region):
        raise ImproperlyConfigured(f"COGNITO_REGION must be an AWS region (got {region!r}).")
    # A pool id starts with its region; a mismatch would fail every sign-in's issuer check.
    if not re.fullmatch(rf"{re.escape(region)}_[0-9A-Za-z]+", pool):
        raise ImproperlyConfigured(
            f"COGNITO_USER_POOL_ID must be a pool id in COGNITO_REGION, {region}_… (got {pool!r})."
        )
    domain = urlsplit(values["COGNITO_DOMAIN"])
    if domain.scheme != "https" or not domain.hostname or domain.path.strip("/") or domain.query:
        raise ImproperlyConfigured(
            "COGNITO_DOMAIN must be the user pool domain as https://host, without a path "
            f"(got {values['COGNITO_DOMAIN']!r})."
        )
    values["COGNITO_DOMAIN"] = f"https://{domain.netloc}"
    return values
