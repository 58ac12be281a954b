"""The chat's in-between states in a real Chromium: a message over the limit, a preamble before a
tool call, a reply that is still streaming (Enter, a reload, screen readers, reduced motion), and
what staff see of dates and pending confirmations. Screenshots go to test-artifacts/.

Where a test needs a model caught mid-reply, the app server talks to the Bedrock stand-in
(``tests.chat.bedrock_standin``) through the real boto3 client, and the test decides when the
stream goes on.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chat.live.handoff import handoff_request
from chat.models import Conversation, HandoffEvent, Message, MessageKind, PendingAction
from chat.staff.transcript import conversation_transcript
from orders.models import Customer, Order, OrderStatus
from orders.services import customer_login_ensure
from tests.browser.test_chat_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    TURN_DONE,
    allow_sync_orm_next_to_playwright,
    say,
    sign_in_and_start,
)
from tests.browser.test_chat_browser import base_url as base_url  # a fixture, re-exported
from tests.browser.test_chat_browser import browser as browser  # a fixture, re-exported
from tests.browser.test_chat_browser import demo_data as demo_data  # a fixture, re-exported
from tests.chat.bedrock_standin import (
    BedrockStandIn,
    stream_reply,
    text_stream_frames,
    tool_stream_frames,
)
from tests.chat.handoff_helpers import PASSWORD, make_agent
from tests.chat.sockets import (
    app_server,
    database_sessions_closed,  # noqa: F401 - a fixture
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

# Fixed, so counts ("4,120") and dates ("Mar 3") read the same on every machine.
LOCALE = {"locale": "en-US", "timezone_id": "UTC"}
MAX_CHARS = 4000
STORED_REPLY = "#transcript .msg-assistant:not(.msg-streaming)"

# What a screen reader would hear from the transcript's live region: the text of every node
# added to it (or text changed in it), unless the node is inside an aria-hidden subtree. Also
# the scroll behaviour of every scrollIntoView call.
HEARING = """
window.heard = [];
window.scrolls = [];
const scrollIntoView = Element.prototype.scrollIntoView;
Element.prototype.scrollIntoView = function (options) {
  window.scrolls.push((options && options.behavior) || "auto");
  return scrollIntoView.call(this, options);
};
function hiddenFromReaders(node) {
  for (let n = node.nodeType === 1 ? node : node.parentElement; n; n = n.parentElement) {
    if (n.getAttribute("aria-hidden") === "true") return true;
  }
  return false;
}
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("transcript");
  if (!log) return;
  new MutationObserver((records) => {
    for (const record of records) {
      const nodes = record.type === "characterData" ? [record.target] : [...record.addedNodes];
      for (const node of nodes) {
        const text = node.textContent.trim();
        if (text && !hiddenFromReaders(node)) window.heard.push(text);
      }
    }
  }).observe(log, { childList: true, subtree: true, characterData: true });
});
"""


@pytest.fixture(scope="module")
def standin() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bedrock_url(
    django_db_setup: None, django_db_blocker: Any, standin: BedrockStandIn, tmp_path_factory: Any
) -> Iterator[str]:
    """An app server whose model is Bedrock, played by the stand-in."""
    missing = tmp_path_factory.mktemp("aws") / "missing"
    env = {
        "DEBUG": "true",
        "DEMO_LOGIN_ENABLED": "true",
        "SECURE_SSL_REDIRECT": "false",
        "CHAT_MODEL": "bedrock",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": standin.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(missing),
        "AWS_SHARED_CREDENTIALS_FILE": str(missing),
        # Longer than any pause a test holds a stream in.
        "BEDROCK_READ_TIMEOUT": "60",
    }
    with django_db_blocker.unblock(), app_server(runserver=True, env=env) as port:
        yield f"http://127.0.0.1:{port}"


def new_page(browser: Any, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **LOCALE, **options)
    context.add_init_script(HEARING)
    page = context.new_page()
    page.set_default_timeout(20_000)
    # Script errors, failed requests (but not the favicon probe) and CSP refusals.
    page.failures = []
    page.on("pageerror", lambda error: page.failures.append(str(error)))
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and not response.url.endswith("/favicon.ico")
            and page.failures.append(f"{response.status} {response.url}")
        ),
    )
    page.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and page.failures.append(message.text)
        ),
    )
    return page


@pytest.fixture
def page(browser: Any, demo_data: None) -> Iterator[Any]:
    page = new_page(browser)
    yield page
    page.context.close()


@pytest.fixture
def agent_page(browser: Any, demo_data: None) -> Iterator[Any]:
    make_agent("sam", "Sam")
    page = new_page(browser)
    yield page
    page.context.close()


def staff_sign_in(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/admin/")


def screenshots(page: Any, name: str) -> None:
    """The page at 1280 px and at 360 px; neither may scroll sideways."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    page.screenshot(path=str(ARTIFACTS / f"{name}-360.png"), full_page=True)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    page.set_viewport_size({"width": 1280, "height": 900})
    assert overflow <= 0, f"{name} scrolls sideways at 360 px"


def note(page: Any) -> Any:
    return page.locator("#composer-note")


# --- The message limit -----------------------------------------------------------------------


def test_a_message_over_the_limit_is_refused_and_kept_whole(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Terry Whitlock")
    box = page.get_by_label("Your message")
    counter = page.locator("#message-count")
    assert box.get_attribute("maxlength") is None

    box.focus()
    page.keyboard.insert_text("x" * 3000)  # typed or pasted, as a person would
    assert counter.is_hidden()
    page.keyboard.insert_text("y" * 900)
    assert counter.inner_text() == "3,900 / 4,000"
    assert note(page).inner_text() == "You are close to the 4,000-character limit."
    page.keyboard.insert_text("z" * 220)
    assert counter.inner_text() == "4,120 / 4,000 · 120 too many"
    assert note(page).inner_text() == "Your message is over the 4,000-character limit."

    box.press("Enter")

    assert note(page).inner_text() == (
        "Not sent: your message is 120 characters over the 4,000-character limit. "
        "Shorten it and send again; your text is still in the box."
    )
    assert note(page).get_attribute("role") == "status"
    assert len(box.input_value()) == MAX_CHARS + 120
    assert box.get_attribute("aria-invalid") == "true"
    assert page.locator("#transcript .msg-customer").count() == 0
    assert not Message.objects.exists()
    screenshots(page, "chat-over-limit")

    box.fill("My order is 32057")
    assert counter.is_hidden()
    assert note(page).inner_text() == ""
    assert box.get_attribute("aria-invalid") is None
    box.press("Enter")
    page.wait_for_function(TURN_DONE)
    assert page.locator("#transcript .msg-customer .msg-body").all_inner_texts() == [
        "My order is 32057"
    ]
    assert not page.failures


# --- Screen readers and reduced motion -------------------------------------------------------


@pytest.mark.parametrize(("motion", "scrolling"), [("reduce", "auto"), ("no-preference", "smooth")])
def test_each_reply_is_heard_once_and_scrolling_follows_the_motion_setting(
    browser: Any, base_url: str, demo_data: None, motion: str, scrolling: str
) -> None:
    page = new_page(browser, reduced_motion=motion)
    try:
        sign_in_and_start(page, base_url, "Terry Whitlock")
        say(page, "My order is 32057")
        reply = page.locator(STORED_REPLY).last.locator(".msg-body").inner_text()
        heard: list[str] = page.evaluate("window.heard")
        scrolls: list[str] = page.evaluate("window.scrolls")
    finally:
        page.context.close()

    assert "Backpack" in reply
    assert [text for text in heard if "Demo model" in text] == [
        text for text in heard if reply in text
    ]
    assert len([text for text in heard if reply in text]) == 1
    assert len([text for text in heard if "My order is 32057" in text]) == 1
    assert scrolls
    assert set(scrolls) == {scrolling}


def test_a_preamble_before_a_tool_call_is_status_not_a_reply(
    browser: Any, bedrock_url: str, standin: BedrockStandIn, demo_data: None
) -> None:
    standin.script(
        stream_reply(
            tool_stream_frames(
                "<thinking>I need the order.</thinking><reply>Let me look that up.</reply>",
                "tooluse_1",
                "get_order_by_id",
                {"order_id": "37129"},
            )
        ),
        stream_reply(
            text_stream_frames(
                "<reply>Order 37129 (2 × Sunglasses) ", "is being processed.</reply>"
            ),
            pause_at=1,  # the second model call has started and said nothing yet
        ),
    )
    page = new_page(browser)
    try:
        sign_in_and_start(page, bedrock_url, "Mary Major")
        page.get_by_label("Your message").fill("Where is my order 37129?")
        page.get_by_label("Your message").press("Enter")

        page.locator("#activity .activity-said", has_text="Let me look that up.").wait_for()
        assert page.locator("#transcript .msg-assistant").count() == 0
        assert page.locator("#transcript .feedback").count() == 0
        screenshots(page, "chat-preamble")
        standin.release()
        page.wait_for_function(TURN_DONE)

        replies = page.locator(STORED_REPLY)
        assert replies.locator(".msg-body").all_inner_texts() == [
            "Order 37129 (2 × Sunglasses) is being processed."
        ]
        assert page.locator("#transcript .feedback").count() == 1
        assert page.locator("#activity").inner_text() == ""
        heard: list[str] = page.evaluate("window.heard")
        assert not [text for text in heard if "look that up" in text]
        page.reload()
        page.wait_for_selector('#connection[data-state="online"]')
        assert page.locator(STORED_REPLY).count() == 1
        assert not page.failures
    finally:
        page.context.close()

    # Staff still read it where it was said.
    conversation = Conversation.objects.get(customer__name="Mary Major")
    said = [e for e in conversation_transcript(conversation) if e.preamble]
    assert [e.text for e in said] == ["Let me look that up."]


def test_enter_while_a_reply_streams_says_why_and_a_reload_shows_it_is_still_coming(
    browser: Any, bedrock_url: str, standin: BedrockStandIn, demo_data: None
) -> None:
    standin.script(
        stream_reply(
            text_stream_frames(
                "<reply>Order 37129 is ", "being processed", " and ships soon.</reply>"
            ),
            pause_at=3,  # after "Order 37129 is being processed"
        ),
        stream_reply(text_stream_frames("<reply>You have no other orders.</reply>")),
    )
    page = new_page(browser)
    try:
        sign_in_and_start(page, bedrock_url, "Mary Major")
        box = page.get_by_label("Your message")
        box.fill("Where is my order 37129?")
        box.press("Enter")
        streaming = page.locator("#transcript .msg-streaming", has_text="being processed")
        streaming.wait_for()

        # Screen readers do not hear the reply while it streams.
        assert streaming.get_attribute("aria-hidden") == "true"
        assert "being processed" not in page.locator("#transcript").aria_snapshot()
        box.fill("And my other orders?")
        box.press("Enter")
        busy_note = (
            "Not sent yet: the assistant is still replying. Your message stays here; "
            "press Enter again when the reply is done."
        )
        note(page).get_by_text(busy_note).wait_for()
        assert box.input_value() == "And my other orders?"
        assert page.locator("#transcript .msg-customer").count() == 1

        page.reload()
        page.wait_for_selector('#connection[data-state="online"]')
        help_text = page.locator("#message-help")
        assert help_text.inner_text() == "The assistant is still replying…"
        assert page.locator("#send").is_disabled()
        box.fill("And my other orders?")
        box.press("Enter")
        note(page).get_by_text(busy_note).wait_for()
        screenshots(page, "chat-still-replying")
        assert help_text.is_visible()  # at 360 px too, where the usual help is hidden

        standin.release()
        page.locator(STORED_REPLY, has_text="ships soon").wait_for()
        page.wait_for_function(TURN_DONE)
        assert page.locator(STORED_REPLY).locator(".msg-body").all_inner_texts() == [
            "Order 37129 is being processed and ships soon."
        ]
        assert help_text.inner_text() == "Enter sends, Shift+Enter adds a new line."
        assert note(page).inner_text() == ""
        assert box.input_value() == "And my other orders?"

        box.press("Enter")
        page.locator(STORED_REPLY, has_text="no other orders").wait_for()
        assert not page.failures
    finally:
        page.context.close()


# --- Staff pages -----------------------------------------------------------------------------


def wait_for_a_person(customer_name: str, asked_at: Any) -> None:
    customer = Customer.objects.get(name=customer_name)
    user = customer_login_ensure(customer=customer)
    conversation = Conversation.objects.create(owner=user, customer=customer)
    handoff_request(conversation=conversation, user=user, reason="")
    HandoffEvent.objects.filter(conversation=conversation).update(created_at=asked_at)


def test_the_inbox_shows_the_date_of_a_request_from_another_day(
    agent_page: Any, base_url: str
) -> None:
    now = timezone.now()
    last_week = now - timedelta(days=8)
    wait_for_a_person("Mary Major", last_week)
    wait_for_a_person("Terry Whitlock", now)
    staff_sign_in(agent_page, base_url)

    agent_page.goto(f"{base_url}/staff/inbox/")
    agent_page.wait_for_selector('#connection[data-state="online"]')
    older = agent_page.locator("#waiting .inbox-item", has_text="Mary Major").inner_text()
    today = agent_page.locator("#waiting .inbox-item", has_text="Terry Whitlock").inner_text()

    assert f"{last_week:%b} {last_week.day}" in older
    assert f"{last_week:%I:%M %p}" in older
    assert f"Waiting since {now:%I:%M %p}" in today
    assert f"{now:%b} {now.day}" not in today
    screenshots(agent_page, "inbox-dates")


def test_the_staff_conversation_page_shows_a_pending_confirmation(
    page: Any, agent_page: Any, base_url: str
) -> None:
    sign_in_and_start(page, base_url, "Mary Major")
    say(page, "My order is 37129")
    say(page, "Please cancel my order")
    page.locator(".prompt").last.wait_for()
    conversation = Conversation.objects.get(customer__name="Mary Major")
    question = PendingAction.objects.get(conversation=conversation).summary
    assert question == "Cancel order 37129 (2 × Sunglasses)?"

    staff_sign_in(agent_page, base_url)
    agent_page.goto(f"{base_url}/staff/conversations/{conversation.pk}/")
    agent_page.wait_for_selector('#connection[data-state="online"]')
    asked = agent_page.locator("#transcript .prompt", has_text=question)
    assert "Waiting for the customer to answer." in asked.inner_text()
    screenshots(agent_page, "staff-pending-confirmation")

    page.get_by_role("button", name="Yes, cancel").click()
    asked.get_by_text("The customer confirmed.").wait_for()
    assert Order.objects.get(pk="37129").status == OrderStatus.CANCELLED
    assert Message.objects.filter(conversation=conversation, kind=MessageKind.ASSISTANT).exists()
    assert not agent_page.failures
