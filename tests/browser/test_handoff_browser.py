"""A customer and a support agent in two browser contexts: asking for a person, the agent
joining from the inbox and replying, the assistant staying silent, and the hand back. Also the
thumbs up / down on the assistant's replies. Screenshots go to test-artifacts/."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, ConversationStatus, Feedback, ModelCall
from tests.browser.test_chat_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    allow_sync_orm_next_to_playwright,
    assistant_texts,
    say,
    sign_in_and_start,
)
from tests.browser.test_chat_browser import base_url as base_url  # a fixture, re-exported
from tests.browser.test_chat_browser import browser as browser  # a fixture, re-exported
from tests.browser.test_chat_browser import demo_data as demo_data  # a fixture, re-exported
from tests.browser.test_chat_browser import page as page  # a fixture, re-exported
from tests.chat.handoff_helpers import make_agent
from tests.chat.sockets import database_sessions_closed  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

PASSWORD = "correct horse 9 battery"


@pytest.fixture
def agent_page(browser: Any, base_url: str, demo_data: None) -> Iterator[Any]:
    """Sam, a staff member in the "Support agent" role, signed in through the admin login."""
    agent: User = make_agent("sam", "Sam", password=PASSWORD)
    agent.save()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    staff = context.new_page()
    staff.set_default_timeout(20_000)
    staff.failures = []
    staff.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and staff.failures.append(message.text)
        ),
    )
    staff.goto(f"{base_url}/admin/login/")
    staff.get_by_label("Username").fill("sam")
    staff.get_by_label("Password").fill(PASSWORD)
    staff.get_by_role("button", name="Log in").click()
    staff.wait_for_url(f"{base_url}/admin/")
    yield staff
    context.close()


def model_calls(conversation: Conversation) -> int:
    return ModelCall.objects.filter(conversation=conversation).count()


def test_a_customer_asks_for_a_person_who_answers_and_hands_back(
    page: Any, agent_page: Any, base_url: str
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in_and_start(page, base_url, "Terry Whitlock")

    say(page, "I want to talk to a person")

    status = page.locator("#handoff-status")
    assert status.inner_text() == "Waiting for a person from our support team…"
    assert not page.get_by_role("button", name="Talk to a person").is_visible()
    conversation = Conversation.objects.get(customer__name="Terry Whitlock")
    assert conversation.status == ConversationStatus.WAITING_FOR_AGENT

    agent_page.goto(f"{base_url}/staff/inbox/")
    assert agent_page.locator(".site-header").get_by_role("link", name="Inbox").is_visible()
    waiting = agent_page.locator("#waiting .inbox-item", has_text="Terry Whitlock")
    waiting.wait_for()
    agent_page.wait_for_selector('#connection[data-state="online"]')
    agent_page.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)
    assert agent_page.locator("#waiting-count").inner_text() == "(1)"
    assert "Asked through the assistant: I want to talk to a person" in waiting.inner_text()
    assert agent_page.locator("#waiting-empty").is_hidden()

    waiting.get_by_role("link", name="Terry Whitlock").click()
    agent_page.wait_for_url(f"{base_url}/staff/conversations/{conversation.pk}/")
    agent_page.wait_for_selector('#connection[data-state="online"]')
    agent_page.get_by_role("button", name="Join the conversation").click()
    reply_box = agent_page.get_by_label("Your reply to Terry Whitlock")
    agent_page.wait_for_selector("#message:enabled")
    reply_box.fill("Hi Terry, I'm Sam from support. How can I help?")
    reply_box.press("Enter")

    staff_message = page.locator("#transcript .msg-staff").last
    staff_message.wait_for()
    assert staff_message.locator(".msg-who").inner_text() == "Sam · Support team"
    assert "I'm Sam from support" in staff_message.locator(".msg-body").inner_text()
    assert status.inner_text() == "You're chatting with Sam."
    page.get_by_text("Sam from our support team has joined the conversation.").wait_for()

    calls_while_held = model_calls(conversation)
    replies_while_held = len(assistant_texts(page))
    say(page, "Where is my order 32057?")
    agent_page.locator("#transcript .msg-customer", has_text="Where is my order 32057?").wait_for()
    assert model_calls(conversation) == calls_while_held
    assert len(assistant_texts(page)) == replies_while_held

    agent_page.get_by_role("button", name="Hand back to the assistant").click()
    page.get_by_text("You're chatting with the assistant again.").wait_for()
    # The notice is stored and sent first; the new state follows it as a separate event.
    page.get_by_role("button", name="Talk to a person").wait_for()

    say(page, "My order is 32057")

    assert model_calls(conversation) > calls_while_held
    assert "Backpack" in assistant_texts(page)[-1]
    page.screenshot(path=str(ARTIFACTS / "handoff-customer.png"), full_page=True)
    assert page.locator("#transcript .msg-staff", has_text="I'm Sam from support").is_visible()
    assert page.locator("#transcript .msg-notice", has_text="assistant again").is_visible()
    assert status.is_hidden()
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.WITH_BOT
    assert not page.failures
    assert not agent_page.failures


def test_the_talk_to_a_person_button_puts_the_customer_in_the_inbox(
    page: Any, agent_page: Any, base_url: str
) -> None:
    agent_page.goto(f"{base_url}/staff/inbox/")
    agent_page.wait_for_selector('#connection[data-state="online"]')
    assert agent_page.locator("#waiting-empty").is_visible()
    sign_in_and_start(page, base_url, "Mary Major")

    page.get_by_role("button", name="Talk to a person").click()

    page.locator("#handoff-status", has_text="Waiting for a person").wait_for()
    agent_page.locator("#waiting .inbox-item", has_text="Mary Major").wait_for()
    assert agent_page.locator("#waiting-count").inner_text() == "(1)"


def test_a_reply_can_be_rated_with_the_keyboard(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Terry Whitlock")
    say(page, "My order is 32057")
    reply = page.locator("#transcript .msg-assistant").last
    down = reply.get_by_role("button", name="Not helpful")
    up = reply.get_by_role("button", name="Helpful", exact=True)
    assert down.get_attribute("aria-pressed") == "false"

    down.focus()
    page.keyboard.press("Enter")
    reply.locator('.feedback-down[aria-pressed="true"]').wait_for()
    comment = reply.get_by_label("Tell us more (optional)")
    comment.fill("I wanted the delivery date.")
    reply.get_by_role("button", name="Send feedback").press("Enter")
    reply.get_by_text("Thanks, we've noted your comment.").wait_for()

    feedback = Feedback.objects.get()
    assert (feedback.score, feedback.comment) == (-1, "I wanted the delivery date.")
    assert up.get_attribute("aria-pressed") == "false"

    page.reload()
    page.wait_for_selector('#connection[data-state="online"]')
    rated = page.locator("#transcript .msg-assistant").last
    assert rated.get_by_role("button", name="Not helpful").get_attribute("aria-pressed") == "true"
    assert not page.failures
