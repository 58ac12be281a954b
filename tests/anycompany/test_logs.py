"""Production log lines: JSON with the request, user, conversation and turn ids, no PII."""

import contextvars
import io
import json
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.test import Client

from anycompany import logcontext
from anycompany.logformat import ConsoleFormatter, JsonFormatter, LogContextFilter, redact
from orders.models import Customer
from tests.anycompany.test_settings import PRODUCTION, run_manage

EMAIL = "ana.carolina_silva+orders@example.com"
PHONES = ["312-555-8204", "(312) 555-8204", "+1 312 555 8204", "3125558204", "+441632960961"]


class Captured:
    """Lines written through the project's real filter and formatter."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.addFilter(LogContextFilter())
        self.handler.setFormatter(formatter)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def json_lines() -> Iterator[Captured]:
    captured = Captured(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(captured.handler)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)


def test_a_record_is_one_json_object_with_the_bound_ids(json_lines: Captured) -> None:
    conversation_id = uuid.uuid4()

    with logcontext.bind(request_id="req-1", user_id=7):
        with logcontext.bind(conversation_id=conversation_id, turn_id=42):
            logging.getLogger("chat.turns").info("turn %s ended after %d model calls", 42, 2)
        logging.getLogger("chat.turns").warning("after the turn")
    logging.getLogger("chat.turns").info("outside")

    inside, after, outside = json_lines.records()
    assert inside["event"] == "turn 42 ended after 2 model calls"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "chat.turns"
    assert inside["time"].endswith("+00:00")
    assert inside["request_id"] == "req-1"
    assert inside["user_id"] == 7
    assert inside["conversation_id"] == str(conversation_id)
    assert inside["turn_id"] == 42
    assert "trace_id" not in inside  # tracing is off
    assert after["request_id"] == "req-1"
    assert "conversation_id" not in after
    assert "turn_id" not in after
    assert set(outside) == {"time", "level", "logger", "event"}
    assert len(json_lines.text.splitlines()) == 3


def test_extra_fields_are_kept(json_lines: Captured) -> None:
    logging.getLogger("chat.realtime").info(
        "metrics", extra={"metric": "open_websockets", "value": 3}
    )

    (record,) = json_lines.records()
    assert record["metric"] == "open_websockets"
    assert record["value"] == 3


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.ERROR])
def test_emails_and_phone_numbers_in_arguments_are_never_written(
    json_lines: Captured, level: int
) -> None:
    logger = logging.getLogger("chat.tools")
    logger.log(level, "lookup by %s or %s", EMAIL, " / ".join(PHONES))
    try:
        raise ValueError(f"no customer with email {EMAIL} or phone {PHONES[0]}")
    except ValueError:
        logger.exception("lookup failed")

    text = json_lines.text
    assert EMAIL not in text
    assert "example.com" not in text
    for phone in PHONES:
        assert phone not in text
    assert "8204" not in text
    first, failure = json_lines.records()
    assert first["event"].startswith("lookup by [email] or [phone]")
    assert "ValueError: no customer with email [email] or phone [phone]" in failure["exception"]


def test_the_console_format_masks_too_and_shows_the_ids() -> None:
    captured = Captured(ConsoleFormatter())
    logger = logging.getLogger("anycompany.tests.console")
    logger.addHandler(captured.handler)
    logger.propagate = False
    try:
        with logcontext.bind(request_id="req-9", turn_id=3):
            logger.warning("call %s about %s", PHONES[0], EMAIL)
    finally:
        logger.removeHandler(captured.handler)
        logger.propagate = True

    assert captured.text.endswith(
        "WARNING anycompany.tests.console call [phone] about [email] [request_id=req-9 turn_id=3]\n"
    )


@pytest.mark.parametrize(
    "kept",
    [
        "order 37129",
        "customer 012345",
        "conversation 6f1c2a9e-3b7d-4c1e-9a55-1234567890ab",
        "in 1.234567 s",
        "10.0.3.17:8000",
        "2025-11-30T16:09:01.123+00:00",
        "sha256 3f2a9c0e1b8d4f6a0e5c",
    ],
)
def test_ids_times_and_addresses_are_not_mistaken_for_phone_numbers(kept: str) -> None:
    assert redact(kept) == kept


def test_ids_follow_work_into_a_thread_when_the_context_is_copied(json_lines: Captured) -> None:
    def work() -> None:
        logging.getLogger("chat.turns").info("on a worker thread")

    with ThreadPoolExecutor(max_workers=1) as pool, logcontext.bind(turn_id=5):
        pool.submit(contextvars.copy_context().run, work).result()
        pool.submit(work).result()

    copied, plain = json_lines.records()
    assert copied["turn_id"] == 5
    assert "turn_id" not in plain


def test_binding_an_unknown_field_is_refused() -> None:
    with pytest.raises(TypeError, match="conversation"), logcontext.bind(conversation=1):
        pass


@pytest.mark.django_db
def test_a_request_logs_with_its_request_id_and_user_and_echoes_the_id(
    json_lines: Captured, alice: Customer
) -> None:
    client = Client()
    assert alice.user is not None
    client.force_login(alice.user)

    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID="edge-4f2a")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "edge-4f2a"
    (record,) = [r for r in json_lines.records() if r["logger"] == "django.request"]
    assert record["event"] == "Not Found: /no-such-page/"
    assert record["request_id"] == "edge-4f2a"
    assert record["user_id"] == alice.user.pk


@pytest.mark.django_db
def test_a_request_without_an_id_takes_the_load_balancer_trace_root_or_a_new_one() -> None:
    root = "1-67891233-abcdef012345678912345678"
    from_alb = Client().get(
        "/healthz", HTTP_X_AMZN_TRACE_ID=f"Self=1-67891234-000000000000000000000000;Root={root}"
    )
    forged = Client().get("/healthz", HTTP_X_REQUEST_ID='x" injected\nline')
    plain = Client().get("/healthz")

    assert from_alb["X-Request-ID"] == root
    assert forged["X-Request-ID"] != plain["X-Request-ID"]
    for response in (forged, plain):
        assert len(response["X-Request-ID"]) == 32
        int(response["X-Request-ID"], 16)


async def test_a_websocket_connection_is_logged_with_its_request_and_user_ids() -> None:
    seen: list[dict[str, object]] = []

    async def consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(logcontext.current()))

    class SignedIn:
        pk = 12
        is_authenticated = True

    scope = {
        "type": "websocket",
        "headers": [(b"x-request-id", b"sock-1"), (b"host", b"testserver")],
        "user": SignedIn(),
    }
    await logcontext.WebsocketLogContext(consumer)(scope, None, None)

    assert seen == [{"request_id": "sock-1", "user_id": 12}]
    assert logcontext.current() == {}


def test_production_logs_json_and_development_logs_lines_unless_told_otherwise() -> None:
    show = "from django.conf import settings; print(settings.LOG_FORMAT)"

    production = run_manage("shell", "-c", show, env=PRODUCTION)
    development = run_manage("shell", "-c", show, env={**PRODUCTION, "DEBUG": "true"})
    chosen = run_manage("shell", "-c", show, env={**PRODUCTION, "LOG_FORMAT": "console"})
    wrong = run_manage("check", env={**PRODUCTION, "LOG_FORMAT": "xml"})

    assert production.stdout.splitlines()[-1] == "json"
    assert development.stdout.splitlines()[-1] == "console"
    assert chosen.stdout.splitlines()[-1] == "console"
    assert "LOG_FORMAT must be json or console (got 'xml')." in wrong.stderr
