"""The staff pages in a real Chromium: a transcript with a tool call and a cancellation, and the
dashboard with data. Screenshots go to test-artifacts/."""

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from chat.live.conversations import conversation_start
from chat.live.turns import action_decide, turn_submit
from chat.models import Conversation, PendingAction
from orders.models import Customer
from orders.services import customer_login_ensure
from tests.browser.test_chat_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    allow_sync_orm_next_to_playwright,
)
from tests.browser.test_chat_browser import base_url as base_url  # a fixture, re-exported
from tests.browser.test_chat_browser import browser as browser  # a fixture, re-exported
from tests.chat.factories import Recorder, user_of
from tests.chat.sockets import database_sessions_closed  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

PASSWORD = "correct horse 9 battery"


def cancelled_through_the_assistant() -> Conversation:
    """Mary Major's "Cancel Order" sample conversation with the demo model, confirmed."""
    call_command("loaddata", "customers", "orders", verbosity=0)
    customer = Customer.objects.get(name="Mary Major")
    customer_login_ensure(customer=customer)
    customer.refresh_from_db()
    user = user_of(customer)
    conversation = conversation_start(user=user)
    events = Recorder()
    for number, text in enumerate(
        ["I need help with an order", "My order is 37129", "Please cancel my order"]
    ):
        turn_submit(
            conversation=conversation,
            user=user,
            text=text,
            client_message_id=f"screen-{number}",
            emit=events,
        )
    action = PendingAction.objects.get(conversation=conversation)
    action_decide(
        conversation=conversation, user=user, action_id=action.pk, approve=True, emit=events
    )
    return conversation


@pytest.fixture
def staff_page(browser: Any, base_url: str, settings: Any) -> Any:
    settings.CHAT_MODEL = "demo"
    User.objects.create_superuser(username="lead", password=PASSWORD, email="lead@example.com")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base_url}/admin/login/")
    page.get_by_label("Username").fill("lead")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/admin/")
    yield page
    context.close()


def test_the_transcript_page_shows_the_tool_calls_and_the_cancellation(
    staff_page: Any, base_url: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    conversation = cancelled_through_the_assistant()

    staff_page.goto(f"{base_url}/admin/chat/conversation/{conversation.pk}/change/")
    cancel_call = staff_page.locator("details.tx-tool", has_text="cancel_order").first
    cancel_call.locator("summary").click()
    staff_page.locator(".tx-call details").first.locator("summary").click()
    staff_page.screenshot(path=str(ARTIFACTS / "admin-transcript.png"), full_page=True)

    customer_says = staff_page.locator(".tx-customer .tx-text")
    assert customer_says.filter(has_text="Please cancel my order").is_visible()
    replies = staff_page.locator(".tx-assistant .tx-text")
    assert replies.filter(has_text=re.compile(r"order 37129 .* is cancelled")).is_visible()
    assert cancel_call.locator("pre").first.inner_text() == '{\n  "order_id": "37129"\n}'
    assert "Cancelled the order" in cancel_call.locator("pre").nth(1).inner_text()
    event = staff_page.locator(".tx-event", has_text="37129")
    assert "cancelled by the customer" in " ".join(event.inner_text().split())
    assert staff_page.locator(".tx-call details[open]").get_by_text("Stop reason").is_visible()
    assert staff_page.locator(".tx-customer").count() == 3


def test_the_dashboard_shows_charts_with_data(staff_page: Any, base_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    cancelled_through_the_assistant()

    staff_page.goto(f"{base_url}/admin/")
    staff_page.get_by_role("link", name="Support dashboard").click()
    staff_page.wait_for_url(f"{base_url}/admin/dashboard/")
    staff_page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    figures = staff_page.locator(".kpis")
    assert figures.get_by_text("Orders cancelled through the assistant").is_visible()
    kpi = figures.locator("div", has_text="Orders cancelled through the assistant")
    assert kpi.locator("dd").inner_text() == "1"
    assert figures.locator("div", has_text="Conversations").first.locator("dd").inner_text() == "1"
    charts = staff_page.get_by_role("img")
    assert charts.count() == 4
    assert staff_page.locator("svg.chart rect.bar").count() >= 30
    assert staff_page.get_by_role("img", name="Conversations per day").is_visible()
