# syntax=docker/dockerfile:1
# AnyCompany Support: Django + Channels served by daphne on port 8000.
# Built for linux/arm64 (Fargate Graviton) by `cdk deploy`; `docker build .` works for any platform.

ARG PYTHON_IMAGE=python:3.12-slim

# --- Builder: resolve nothing, install exactly what uv.lock pins -----------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

RUN pip install "uv==0.13.9"

WORKDIR /build
COPY pyproject.toml uv.lock ./
# Runtime dependencies only: no test tools, no CDK.
RUN uv sync --frozen --no-dev --no-group infra --no-install-project --python /usr/local/bin/python

# --- Runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=anycompany.settings

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY . .

# Static files are collected into the image with hashed names and gzip copies, and the app
# serves them itself (WhiteNoise). The key below exists only for this build step because
# settings refuse to load without one when DEBUG is off.
RUN DEBUG=false SECRET_KEY=build-only-collectstatic-key CHAT_MODEL=demo \
    python manage.py collectstatic --no-input --verbosity 0 \
    && python -m compileall -q anycompany chat orders

USER app
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# No --proxy-headers: daphne would take the client address from the left of X-Forwarded-For,
# which the client writes. The app reads it per TRUSTED_PROXY_COUNT, and the scheme per
# SECURE_PROXY_SSL_HEADER (anycompany/throttle.py, anycompany/websocket.py).
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "anycompany.asgi:application"]
