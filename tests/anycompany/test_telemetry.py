"""Traces: off without the OpenTelemetry environment; with it, requests and queries are spans."""

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import AsyncClient, Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from anycompany import telemetry
from anycompany.logformat import JsonFormatter, LogContextFilter
from orders.models import Customer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse 9"

pytestmark = pytest.mark.django_db(transaction=True)


def attribute_text(spans: Sequence[ReadableSpan]) -> str:
    return json.dumps([dict(span.attributes or {}) for span in spans], default=str)


async def test_an_asgi_request_yields_a_django_server_span_with_its_queries_as_children(
    alice: Customer,
) -> None:
    assert alice.user is not None
    await sync_to_async(connections.close_all)()
    with telemetry.in_memory_tracing() as exporter:
        client = AsyncClient()
        await client.aforce_login(alice.user)
        exporter.clear()

        response = await client.get("/")

        spans = exporter.get_finished_spans()
        # The request ran on asgiref's thread, with a traced connection of its own.
        await sync_to_async(connections.close_all)()
    assert response.status_code == 200
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    assert server.name == "GET home"
    assert server.attributes is not None
    assert server.attributes["http.status_code"] == 200
    assert server.resource.attributes["service.name"] == "anycompany-support"
    queries = [span for span in spans if (span.attributes or {}).get("db.system") == "postgresql"]
    assert queries
    for query in queries:
        assert query.kind == SpanKind.CLIENT
        assert query.context.trace_id == server.context.trace_id
        assert query.parent is not None
        assert query.parent.span_id == server.context.span_id


def test_no_credentials_or_query_values_reach_span_attributes(alice: Customer) -> None:
    connections.close_all()
    with telemetry.in_memory_tracing() as exporter:
        response = Client().post(
            "/accounts/login/", {"username": alice.username, "password": PASSWORD}
        )
        spans = exporter.get_finished_spans()

    assert response.status_code == 302
    assert any(span.kind == SpanKind.SERVER for span in spans)
    text = attribute_text(spans)
    assert PASSWORD not in text
    assert alice.username not in text
    assert alice.email not in text


def test_probes_and_static_files_are_not_traced() -> None:
    with telemetry.in_memory_tracing() as exporter:
        client = Client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/static/css/site.css").status_code == 200
        spans = exporter.get_finished_spans()

    assert [span for span in spans if span.kind == SpanKind.SERVER] == []


def test_log_lines_inside_a_span_carry_its_trace_and_span_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("anycompany.tests.traced")
    logger.addHandler(handler)
    try:
        with (
            telemetry.in_memory_tracing(),
            telemetry.tracer().start_as_current_span("work") as span,
        ):
            logger.warning("inside")
            context = span.get_span_context()
    finally:
        logger.removeHandler(handler)

    record = json.loads(stream.getvalue())
    assert record["trace_id"] == format(context.trace_id, "032x")
    assert record["span_id"] == format(context.span_id, "016x")


def test_the_tracer_is_a_no_op_when_tracing_is_off() -> None:
    assert not telemetry.is_on()
    with telemetry.tracer().start_as_current_span("unrecorded") as span:
        assert not span.is_recording()
    assert telemetry.current_trace_ids() is None
    assert telemetry.capture_content() is False


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, None),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
    ],
)
def test_the_standard_environment_decides_whether_tracing_is_on(
    environ: dict[str, str], exporter: str | None
) -> None:
    assert telemetry.exporter_from_environment(environ) == exporter


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_an_unsupported_value_is_named(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        telemetry.exporter_from_environment(environ)


# Starts the ASGI application as daphne does and reports what it loaded.
PROBE = """
import json, sys
from django.conf import settings
import anycompany.asgi
# redis-py itself imports the SDK's metrics package whenever the SDK is installed; what tracing
# would add is the tracing SDK, the exporter and the instrumentation.
TRACING_MODULES = (
    "opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation"
)
print(json.dumps({
    "tracing_imported": sorted(
        name for name in sys.modules if name.startswith(TRACING_MODULES)
    ),
    "middleware": [m for m in settings.MIDDLEWARE if "opentelemetry" in m],
    "on": anycompany.asgi.telemetry.is_on(),
}))
"""


def start_application(extra: dict[str, str]) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_without_the_environment_no_tracing_is_loaded_or_installed() -> None:
    started = start_application({})

    assert started == {"tracing_imported": [], "middleware": [], "on": False}


def test_with_an_endpoint_the_application_starts_traced() -> None:
    # Nothing listens there; no span is finished before the process exits.
    started = start_application({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})

    assert started["on"] is True
    assert "opentelemetry.sdk.trace" in started["tracing_imported"]
    assert started["middleware"] == [
        "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"
    ]
