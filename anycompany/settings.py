"""Settings for AnyCompany Support, read from the environment.

Development and production differ only in values: every variable is documented in
``.env.example`` and in the README's configuration table.
"""

from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from anycompany.env import (
    cognito_from_env,
    database_from_env,
    env_bool,
    env_choice,
    env_decimal,
    env_float,
    env_int,
    env_list,
    env_str,
)
from anycompany.logformat import logging_config
from anycompany.telemetry import exporter_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-only" if DEBUG else None)
# Earlier keys, still accepted for the sessions they signed, so rotating SECRET_KEY signs nobody
# out (docs/deploy.md).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin with our site: its sign-in form and staff access rule.
    "anycompany.apps.SupportAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "orders",
    "chat",
]

MIDDLEWARE = [
    "anycompany.logcontext.RequestLogContextMiddleware",
    # The middleware that only set response headers come before the health probes, so the
    # probes' answers carry the same security headers as every page.
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Before host validation (CommonMiddleware): load balancer probes use the task's IP as
    # Host. Their paths are exempt from the HTTPS redirect (SECURE_REDIRECT_EXEMPT).
    "anycompany.health.HealthCheckMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "anycompany.logcontext.UserLogContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "anycompany.urls"
TEST_RUNNER = "anycompany.test_runner.PytestTestRunner"
ASGI_APPLICATION = "anycompany.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "anycompany.context_processors.site",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------


# PostgreSQL connections one process may hold, in one pool shared by requests, sockets and turn
# workers (0: no pool, a persistent connection per thread). 1,000 simultaneous turns on 8
# connections ran as fast as on 20 (bench/README.md, row 4): a turn holds one only while it
# reads or writes. Ten server tasks of 10 stay well under a small RDS instance's limit.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10, minimum=0)
DATABASES = {"default": database_from_env(BASE_DIR, pool_size=DATABASE_POOL_SIZE)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ---------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "")
# Group sends over capacity are dropped silently; the database is the source of truth and
# the layer only a wake-up signal, but a generous capacity keeps live streaming smooth.
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=1)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.live.layer.OriginSkippingRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        # redis-py's defaults (100 connections, 5 s socket timeout) collide
                        # with channels-redis's 5 s blocking pop under load.
                        "max_connections": env_int("REDIS_MAX_CONNECTIONS", 1000, minimum=1),
                        "socket_timeout": 15,
                        "socket_connect_timeout": 5,
                        "health_check_interval": 30,
                    }
                ],
                "capacity": CHANNEL_LAYER_CAPACITY,
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_LAYER_CAPACITY, "expiry": 60},
        }
    }

CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "anycompany",
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Auth -------------------------------------------------------------------------------------

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"
# Dev-only: a page that signs in as any demo customer without a password.
DEMO_LOGIN_ENABLED = env_bool("DEMO_LOGIN_ENABLED", DEBUG)
if DEMO_LOGIN_ENABLED and not DEBUG:
    raise ImproperlyConfigured("DEMO_LOGIN_ENABLED may only be true when DEBUG is true.")

# Sign-in through Amazon Cognito (anycompany/cognito.py): off unless COGNITO_CLIENT_ID is set.
_cognito_env = cognito_from_env()
COGNITO_ENABLED = _cognito_env is not None
if _cognito_env is not None:
    AUTHENTICATION_BACKENDS = ["anycompany.cognito.CognitoBackend", *AUTHENTICATION_BACKENDS]
    COGNITO_DOMAIN = _cognito_env["COGNITO_DOMAIN"]
    COGNITO_ISSUER = (
        f"https://cognito-idp.{_cognito_env['COGNITO_REGION']}.amazonaws.com/"
        f"{_cognito_env['COGNITO_USER_POOL_ID']}"
    )
    OIDC_RP_CLIENT_ID = _cognito_env["COGNITO_CLIENT_ID"]
    OIDC_RP_CLIENT_SECRET = _cognito_env["COGNITO_CLIENT_SECRET"]
    OIDC_OP_AUTHORIZATION_ENDPOINT = f"{COGNITO_DOMAIN}/oauth2/authorize"
    OIDC_OP_TOKEN_ENDPOINT = f"{COGNITO_DOMAIN}/oauth2/token"
    # Required by mozilla-django-oidc but not called: the claims come from the verified ID token.
    OIDC_OP_USER_ENDPOINT = f"{COGNITO_DOMAIN}/oauth2/userInfo"
    OIDC_OP_JWKS_ENDPOINT = f"{COGNITO_ISSUER}/.well-known/jwks.json"
    OIDC_OP_LOGOUT_URL_METHOD = "anycompany.cognito.logout_url"
    # The library's defaults are HS256, no PKCE, the secret in the form body and no timeout.
    OIDC_RP_SIGN_ALGO = "RS256"
    OIDC_RP_SCOPES = "openid email"
    OIDC_USE_NONCE = True
    OIDC_USE_PKCE = True
    OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
    OIDC_TOKEN_USE_BASIC_AUTH = True
    OIDC_TIMEOUT = 10
    OIDC_ALLOW_UNSECURED_JWT = False
    OIDC_STORE_ACCESS_TOKEN = False
    OIDC_STORE_ID_TOKEN = False
    LOGIN_REDIRECT_URL_FAILURE = "/accounts/login/?error=cognito"

# --- Sign-in throttling, staff access and client addresses (anycompany/signin.py) ---------

# Failed password sign-ins per account (however it was named) and per client address, in
# fixed windows; past either limit nothing is checked until the window ends.
SIGNIN_FAILURES_PER_ACCOUNT = env_int("SIGNIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
SIGNIN_FAILURES_PER_ADDRESS = env_int("SIGNIN_FAILURES_PER_ADDRESS", 50, minimum=1)
SIGNIN_THROTTLE_SECONDS = env_int("SIGNIN_THROTTLE_SECONDS", 900, minimum=1)
# Proxies in front of the app that append to X-Forwarded-For (1 behind the load balancer).
# The client address is the entry the outermost of them wrote; 0 uses the connection's peer.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# With Cognito, staff sign in through it only; these accounts may still use a password.
ADMIN_BREAK_GLASS_USERNAMES = env_list("ADMIN_BREAK_GLASS_USERNAMES")

# --- Internationalisation, static and media ---------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
AWS_S3_CUSTOM_DOMAIN = env_str("AWS_S3_CUSTOM_DOMAIN", "")
# "app": the app serves its own static files (WhiteNoise: compressed, hashed names, cached for
# good). "s3": collectstatic uploads them to the bucket, served through AWS_S3_CUSTOM_DOMAIN.
STATIC_STORAGE = env_choice("STATIC_STORAGE", "app", ["app", "s3"])
if STATIC_STORAGE == "s3" and not (AWS_STORAGE_BUCKET_NAME and AWS_S3_CUSTOM_DOMAIN):
    raise ImproperlyConfigured(
        "STATIC_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME and AWS_S3_CUSTOM_DOMAIN (a CloudFront "
        "domain that reads the bucket): static URLs are unsigned, so browsers can cache them."
    )
STORAGES: dict[str, dict[str, object]] = {
    "default": (
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": AWS_STORAGE_BUCKET_NAME,
                "custom_domain": AWS_S3_CUSTOM_DOMAIN or None,
                "location": "media",
                # Media and exports are private: every URL is signed and expires.
                "querystring_auth": True,
                "file_overwrite": False,
            },
        }
        if AWS_STORAGE_BUCKET_NAME
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    "staticfiles": (
        {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
        if DEBUG
        else {"BACKEND": "anycompany.storage.HashedStaticFilesStorage"}
    ),
}
if STATIC_STORAGE == "s3":
    STORAGES["staticfiles"] = {
        "BACKEND": "storages.backends.s3.S3ManifestStaticStorage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "custom_domain": AWS_S3_CUSTOM_DOMAIN,
            "location": "static",
            "querystring_auth": False,
            "file_overwrite": True,
            "object_parameters": {"CacheControl": "max-age=31536000, public, immutable"},
        },
    }

# --- Security ---------------------------------------------------------------------------------

# Behind the load balancer TLS ends there; the tasks only accept traffic from it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=60)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Scripts only from our own origin (or the static files' domain when an operator moved them to
# S3): model text can never become executable. The sign-out form's redirect goes to Cognito.
_STATIC_ORIGINS = [f"https://{AWS_S3_CUSTOM_DOMAIN}"] if STATIC_STORAGE == "s3" else []
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'", *_STATIC_ORIGINS],
    "style-src": ["'self'", *_STATIC_ORIGINS],
    "img-src": ["'self'", "data:", *_STATIC_ORIGINS],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'", *([COGNITO_DOMAIN] if COGNITO_ENABLED else [])],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
}

# --- Logging ----------------------------------------------------------------------------------

# One JSON object per line for the log driver, readable lines in a terminal.
LOG_LEVEL = env_choice(
    "LOG_LEVEL", "info", ["debug", "info", "warning", "error", "critical"]
).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "console" if DEBUG else "json", ["json", "console"])
LOGGING = logging_config(level=LOG_LEVEL, log_format=LOG_FORMAT)

# --- Traces (anycompany/telemetry.py) ---------------------------------------------------------

# From the standard OpenTelemetry variables: "otlp", "console" or None (tracing off).
TRACES_EXPORTER = exporter_from_environment()
# Prompt and message text in spans: off. The same variable governs botocore's Bedrock spans.
TRACES_CAPTURE_CONTENT = env_bool("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", False)

# --- Chat and the model -----------------------------------------------------------------------

CHAT_MODEL = env_str("CHAT_MODEL", "demo")
if CHAT_MODEL not in {"demo", "bedrock"}:
    raise ImproperlyConfigured(f"CHAT_MODEL must be 'demo' or 'bedrock' (got {CHAT_MODEL!r}).")
# A pause between the demo model's streamed chunks, so streaming is visible in the browser.
CHAT_DEMO_DELAY_SECONDS = env_float("CHAT_DEMO_DELAY_SECONDS", 0.0, minimum=0.0)
BEDROCK_MODEL_ID = env_str("BEDROCK_MODEL_ID", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
BEDROCK_TEMPERATURE = env_float("BEDROCK_TEMPERATURE", 0.0, minimum=0.0)
BEDROCK_TOP_K = env_int("BEDROCK_TOP_K", 10, minimum=0)
BEDROCK_MAX_TOKENS = env_int("BEDROCK_MAX_TOKENS", 4096, minimum=1)
# "auto" (None): on for the Claude models whose Converse API takes cache points.
_PROMPT_CACHING = env_choice("BEDROCK_PROMPT_CACHING", "auto", ["auto", "true", "false"])
BEDROCK_PROMPT_CACHING = None if _PROMPT_CACHING == "auto" else _PROMPT_CACHING == "true"
BEDROCK_GUARDRAIL_ID = env_str("BEDROCK_GUARDRAIL_ID", "")
BEDROCK_GUARDRAIL_VERSION = env_str("BEDROCK_GUARDRAIL_VERSION", "")
if bool(BEDROCK_GUARDRAIL_ID) != bool(BEDROCK_GUARDRAIL_VERSION):
    raise ImproperlyConfigured(
        "Set both BEDROCK_GUARDRAIL_ID and BEDROCK_GUARDRAIL_VERSION, or neither."
    )
BEDROCK_CONNECT_TIMEOUT = env_float("BEDROCK_CONNECT_TIMEOUT", 5.0, minimum=0.1)
# Per socket read (streams send chunks often); attempts times this stays under the turn deadline.
BEDROCK_READ_TIMEOUT = env_float("BEDROCK_READ_TIMEOUT", 30.0, minimum=1.0)
BEDROCK_MAX_ATTEMPTS = env_int("BEDROCK_MAX_ATTEMPTS", 3, minimum=1)
# botocore's own check of each request before it is sent; Bedrock checks it again either way.
BEDROCK_VALIDATE_REQUESTS = env_bool("BEDROCK_VALIDATE_REQUESTS", False)

# Turns run on a dedicated executor so a slow model call never blocks another socket. A turn
# thread mostly waits on the model and holds no database connection meanwhile, so many are
# cheap; past ~70 two-second turns a process is bound by its CPU (one core: the GIL), not by
# this (bench/README.md, row 4). 256 keeps that CPU busy with model calls of up to ~8 s.
CHAT_MAX_CONCURRENT_TURNS = env_int("CHAT_MAX_CONCURRENT_TURNS", 256, minimum=1)
# Past this estimate, a model call carries only the latest turns (chat/engine/budget.py).
CHAT_CONTEXT_BUDGET_TOKENS = env_int("CHAT_CONTEXT_BUDGET_TOKENS", 12000, minimum=0)
CHAT_MAX_MODEL_CALLS_PER_TURN = env_int("CHAT_MAX_MODEL_CALLS_PER_TURN", 8, minimum=1)
CHAT_TURN_DEADLINE_SECONDS = env_float("CHAT_TURN_DEADLINE_SECONDS", 120.0, minimum=1.0)
# A running turn's owner renews its lease every third of this; a turn whose lease lapsed (its
# process died or lost the database) is closed by any server process soon after.
CHAT_TURN_LEASE_SECONDS = env_float("CHAT_TURN_LEASE_SECONDS", 10.0, minimum=3.0)
CHAT_MESSAGE_MAX_CHARS = env_int("CHAT_MESSAGE_MAX_CHARS", 4000, minimum=1)
CHAT_RATE_LIMIT_PER_MINUTE = env_int("CHAT_RATE_LIMIT_PER_MINUTE", 20, minimum=1)
CHAT_RESUMES_PER_MINUTE = env_int("CHAT_RESUMES_PER_MINUTE", 60, minimum=1)
CHAT_CONNECTS_PER_MINUTE = env_int("CHAT_CONNECTS_PER_MINUTE", 60, minimum=1)
CHAT_CONVERSATIONS_PER_HOUR = env_int("CHAT_CONVERSATIONS_PER_HOUR", 30, minimum=1)
CHAT_DAILY_TOKEN_BUDGET = env_int("CHAT_DAILY_TOKEN_BUDGET", 500_000, minimum=0)

# --- Backoffice -------------------------------------------------------------------------------

# Days of inactivity after which `manage.py purge_conversations` deletes a conversation (0: never).
CONVERSATION_RETENTION_DAYS = env_int("CONVERSATION_RETENTION_DAYS", 365, minimum=0)
# US dollars per million tokens, for the cost estimates in the admin and the dashboard only.
BEDROCK_PRICE_INPUT_PER_MTOK = env_decimal(
    "BEDROCK_PRICE_INPUT_PER_MTOK", Decimal("3.00"), minimum=Decimal(0)
)
BEDROCK_PRICE_OUTPUT_PER_MTOK = env_decimal(
    "BEDROCK_PRICE_OUTPUT_PER_MTOK", Decimal("15.00"), minimum=Decimal(0)
)
BEDROCK_PRICE_CACHE_READ_PER_MTOK = env_decimal(
    "BEDROCK_PRICE_CACHE_READ_PER_MTOK", Decimal("0.30"), minimum=Decimal(0)
)
BEDROCK_PRICE_CACHE_WRITE_PER_MTOK = env_decimal(
    "BEDROCK_PRICE_CACHE_WRITE_PER_MTOK", Decimal("3.75"), minimum=Decimal(0)
)
