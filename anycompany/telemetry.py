"""OpenTelemetry tracing: off unless the standard OpenTelemetry environment asks for it.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, or
``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console``; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` keep it off. Spans go over OTLP/HTTP (port 4318) to a collector;
the exporter reads the rest of the standard variables (headers, timeout, sampler) itself.
``anycompany/asgi.py`` calls :func:`configure` before Django loads its middleware; the SDK is
imported only then, so a process without tracing never pays for it.

Instrumented: Django requests (not ``/healthz``, ``/readyz`` or static files), psycopg and
botocore. Websocket connections get no span of their own: one lives for hours, and each chat
turn starts its own trace. Spans never hold message text unless
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is true (see :func:`capture_content`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from anycompany.dbpool import pool_reset

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Tracer

DEFAULT_SERVICE_NAME = "anycompany-support"
# Probes and static files would be most spans and tell nothing.
DEFAULT_EXCLUDED_URLS = "healthz,readyz,static/"
INSTRUMENTATION_NAME = "anycompany"
_EXPORTERS = {"otlp", "console"}

_provider: TracerProvider | None = None
_instrumentors: list[object] = []


def exporter_from_environment(environ: Mapping[str, str] = os.environ) -> str | None:
    """Which span exporter the standard OpenTelemetry variables ask for, or ``None`` (off).

    Raises ``ImproperlyConfigured`` naming the variable when a value cannot be honoured.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ImproperlyConfigured(
                f"{name} must be http/protobuf (got {protocol!r}): traces are sent over "
                "OTLP/HTTP, to port 4318 of the collector."
            )
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return None
    if exporter:
        if exporter not in _EXPORTERS:
            raise ImproperlyConfigured(
                f"OTEL_TRACES_EXPORTER must be otlp, console or none (got {exporter!r})."
            )
        return exporter
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return "otlp"
    return None


def configure() -> bool:
    """Starts tracing when ``settings.TRACES_EXPORTER`` is set; returns whether it did.

    Call once per process, before Django builds its request handler (the Django
    instrumentation adds a middleware). Later calls do nothing.
    """
    global _provider
    if settings.TRACES_EXPORTER is None or _provider is not None:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if settings.TRACES_EXPORTER == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # Libraries that ask for the global provider get this one too.
    trace.set_tracer_provider(provider)
    _instrument(provider)
    _provider = provider
    return True


def is_on() -> bool:
    return _provider is not None


def tracer() -> Tracer:
    """The project's tracer; a no-op tracer when tracing is off."""
    from opentelemetry import trace

    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer(INSTRUMENTATION_NAME)


def capture_content() -> bool:
    """Whether spans may carry prompt and message text (``TRACES_CAPTURE_CONTENT``, off)."""
    return bool(settings.TRACES_CAPTURE_CONTENT)


def current_trace_ids() -> tuple[str, str] | None:
    """The current trace and span ids as hex, for log lines; ``None`` when there is no span."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_trace_id() -> str:
    """The current trace id as hex, or "" without a span (stored with records, e.g. model calls)."""
    ids = current_trace_ids()
    return ids[0] if ids is not None else ""


@contextmanager
def library_spans_suppressed() -> Iterator[None]:
    """Inside the block the instrumented libraries (botocore, psycopg) make no spans.

    For a call the project traces itself: the botocore instrumentation would add a second
    GenAI span for each Bedrock call the chat already describes.
    """
    if _provider is None:
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


@contextmanager
def in_memory_tracing() -> Iterator[InMemorySpanExporter]:
    """Test hook: traces into an in-memory exporter, with the same instrumentation, then off.

    Build Django test clients inside the block: the Django instrumentation's middleware is
    only in ``MIDDLEWARE`` while it lasts. Only connections opened inside are traced, and they
    stay traced: the database pool is emptied at the start and at the end (use it in
    transactional tests).
    """
    global _provider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if _provider is not None:
        raise RuntimeError("Tracing is already configured in this process.")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pool_reset()
    _instrument(provider)
    _provider = provider
    try:
        yield exporter
    finally:
        _provider = None
        _uninstrument()
        pool_reset()
        provider.shutdown()


def _resource() -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    return Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME}
    )


def _instrument(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or DEFAULT_EXCLUDED_URLS
    django = DjangoInstrumentor()
    django.instrument(tracer_provider=provider, excluded_urls=excluded)
    psycopg = PsycopgInstrumentor()
    # No SQL comments: they would make every statement text unique to its trace.
    psycopg.instrument(tracer_provider=provider, enable_commenter=False)
    botocore = BotocoreInstrumentor()
    botocore.instrument(tracer_provider=provider)
    _instrumentors[:] = [django, psycopg, botocore]


def _uninstrument() -> None:
    for instrumentor in reversed(_instrumentors):
        instrumentor.uninstrument()  # type: ignore[attr-defined]
    _instrumentors.clear()
