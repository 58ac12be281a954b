"""What the chat page says when its socket is closed for good, in a real Chromium against the
real server: the session ended (signed out in another tab, or gone while the page stayed open)
or the conversation is gone. It says so with a link to what to do, never "Reconnecting…"."""

from typing import Any

import pytest
from django.contrib.sessions.models import Session

from chat.models import Conversation
from tests.browser.test_chat_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    allow_sync_orm_next_to_playwright,
    sign_in_and_start,
)
from tests.browser.test_chat_browser import base_url as base_url  # a fixture, re-exported
from tests.browser.test_chat_browser import browser as browser  # a fixture, re-exported
from tests.browser.test_chat_browser import demo_data as demo_data  # a fixture, re-exported
from tests.browser.test_chat_browser import page as page  # a fixture, re-exported
from tests.chat.sockets import database_sessions_closed  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

ENDED = '#connection[data-state="ended"]'


def test_signing_out_in_another_tab_tells_the_chat_page_to_sign_in_again(
    page: Any, base_url: str
) -> None:
    sign_in_and_start(page, base_url, "Mary Major")
    chat_url = page.url
    other_tab = page.context.new_page()
    other_tab.goto(f"{base_url}/")

    other_tab.get_by_role("button", name="Sign out").click()

    status = page.locator(ENDED)
    status.wait_for()
    assert status.inner_text().startswith("Your session has ended.")
    link = status.get_by_role("link", name="Sign in again")
    assert link.get_attribute("href").endswith(f"?next={chat_url.removeprefix(base_url)}")
    assert page.get_by_label("Your message").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "session-ended.png"))
    page.wait_for_timeout(3000)  # longer than the first reconnect would take
    assert "Reconnecting" not in page.locator("#connection").inner_text()


def test_a_message_typed_after_the_session_expired_stays_in_the_box(
    page: Any, base_url: str
) -> None:
    sign_in_and_start(page, base_url, "Mary Major")
    box = page.get_by_label("Your message")
    # Typed first: the page's own resume may find the session gone before the test would type,
    # and then the box is already read-only; either way, what was typed must stay.
    box.fill("Please cancel order 37129")
    Session.objects.all().delete()  # expired and cleared: no sign-out signal

    box.press("Enter")

    page.locator(ENDED).wait_for()
    assert "Your session has ended." in page.locator("#connection").inner_text()
    assert box.input_value() == "Please cancel order 37129"
    assert not Conversation.objects.filter(title__contains="37129").exists()


def test_a_conversation_gone_while_open_says_so_with_a_link(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Mary Major")
    Conversation.objects.all().delete()

    page.context.set_offline(True)
    page.context.set_offline(False)  # the socket drops and reconnects to a missing conversation

    status = page.locator(ENDED)
    status.wait_for()
    assert status.inner_text().startswith("This conversation is gone.")
    assert status.get_by_role("link", name="Go to your conversations").get_attribute("href") == "/"
