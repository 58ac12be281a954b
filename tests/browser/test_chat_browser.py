"""The chat in a real Chromium against the real ASGI server (daphne), with the demo model.

The five sample conversations of the original README are typed into the page, each signed in
(through the demo sign-in page) as the customer it concerns.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from orders.models import Order, OrderStatus
from tests.chat.sockets import app_server, database_sessions_closed  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# A copy of the original design's sample conversations.
SCENARIOS_FILE = ROOT / "tests" / "chat" / "readme_scenarios.json"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TURN_DONE = """() => {
  const send = document.querySelector('#send');
  return send && !send.disabled && !document.querySelector('.msg-pending, .msg-streaming');
}"""

# The README's sample conversations, as the customer each one concerns, and what must hold.
SCENARIOS: list[dict[str, Any]] = [
    {
        "name": "Order Lookup",
        "customer": "Terry Whitlock",
        "turns": ["I need help with an order", "My order is 32057"],
        "reply_mentions": ["32057", "Backpack", "Shipped"],
        "order": ("32057", OrderStatus.SHIPPED),
    },
    {
        "name": "Cancel Order",
        "customer": "Mary Major",
        "turns": ["I need help with an order", "My order is 37129", "Please cancel my order"],
        "confirm": True,
        "reply_mentions": ["37129"],
        "order": ("37129", OrderStatus.CANCELLED),
    },
    {
        "name": "Account Lookup",
        "customer": "Ana Carolina Silva",
        "turns": [
            "Hello, I need some help",
            "I don't remember my order id",
            "My email is anacarolina_silva@example.com",
            "What are my orders",
        ],
        "reply_mentions": ["86420", "81695"],
        "order": ("81695", OrderStatus.PROCESSING),
    },
    {
        "name": "Combining Requests",
        "customer": "Arnav Desai",
        "turns": [
            "I need to cancel an order but don't remember my order id",
            "My phone number is 312-555-8204",
            "Yes",
        ],
        "reply_mentions": ["54321"],
        "order": ("54321", OrderStatus.SHIPPED),
    },
    {
        "name": "README walkthrough (Tools Required / Continued conversation)",
        "customer": "Márcia Oliveria",
        "turns": [
            "i need help with an order",
            "my order is 14826",
            "I'd like to cancel this order",
        ],
        "reply_mentions": ["14826", "Shipped"],
        "order": ("14826", OrderStatus.SHIPPED),
    },
]


def test_the_scenarios_match_the_reference() -> None:
    reference = json.loads(SCENARIOS_FILE.read_text(encoding="utf-8"))
    assert [(s["name"], s["user_turns"]) for s in reference] == [
        (s["name"], s["turns"]) for s in SCENARIOS
    ]


@pytest.fixture(scope="module")
def allow_sync_orm_next_to_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an event loop in this thread; the ORM calls here are sync.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def base_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    env = {"DEBUG": "true", "DEMO_LOGIN_ENABLED": "true", "SECURE_SSL_REDIRECT": "false"}
    with django_db_blocker.unblock(), app_server(runserver=True, env=env) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(allow_sync_orm_next_to_playwright: None) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def demo_data(transactional_db: None) -> None:
    call_command("loaddata", "customers", "orders", verbosity=0)


@pytest.fixture
def page(browser: Any, demo_data: None) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    # Failed requests (a script refused by the CSP, a missing file), but not the favicon probe.
    page.failures = []
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
    yield page
    context.close()


def sign_in_and_start(page: Any, base_url: str, customer_name: str) -> None:
    page.goto(f"{base_url}/accounts/demo/")
    page.get_by_role("button", name=f"Sign in as {customer_name}").click()
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_url("**/conversations/*/")
    page.wait_for_selector('#connection[data-state="online"]')


def say(page: Any, text: str) -> None:
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    page.wait_for_function(TURN_DONE)


def assistant_texts(page: Any) -> list[str]:
    return page.locator(
        "#transcript .msg-assistant:not(.msg-streaming) .msg-body"
    ).all_inner_texts()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_a_readme_conversation_in_the_browser(
    page: Any, base_url: str, scenario: dict[str, Any]
) -> None:
    sign_in_and_start(page, base_url, scenario["customer"])

    for text in scenario["turns"]:
        say(page, text)
    if scenario.get("confirm"):
        prompt = page.locator(".prompt").last
        prompt.get_by_role("button", name="Yes, cancel").click()
        page.wait_for_selector(".prompt .prompt-result")
        page.wait_for_function(TURN_DONE)

    customer_texts = page.locator("#transcript .msg-customer .msg-body").all_inner_texts()
    assert customer_texts == scenario["turns"]
    replies = "\n".join(assistant_texts(page))
    print(f"\n--- {scenario['name']} ---\n{replies}")
    for fragment in scenario["reply_mentions"]:
        assert fragment in replies
    order_id, status = scenario["order"]
    assert Order.objects.get(pk=order_id).status == status
    assert not page.dialogs
    assert not page.failures


def test_model_text_is_shown_as_text_never_as_markup(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Terry Whitlock")
    payload = "<img src=x onerror=alert(1)>"

    say(page, payload)

    transcript = page.locator("#transcript")
    assert transcript.locator("img").count() == 0
    assert payload in "\n".join(assistant_texts(page))
    assert (
        page.locator("#transcript .msg-assistant")
        .get_by_text(payload, exact=False)
        .first.is_visible()
    )
    assert not page.dialogs


def test_the_chat_fits_a_phone_and_a_desktop(page: Any, base_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in_and_start(page, base_url, "Mary Major")
    say(page, "I need help with an order")
    say(page, "My order is 37129")
    say(page, "Please cancel my order")
    page.locator(".prompt").last.wait_for()

    page.screenshot(path=str(ARTIFACTS / "chat-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    page.screenshot(path=str(ARTIFACTS / "chat-360.png"), full_page=True)

    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    assert page.get_by_role("button", name="Keep it").is_visible()
    assert page.get_by_label("Your message").is_visible()


def test_keep_it_leaves_the_order_alone(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Mary Major")
    for text in ("My order is 37129", "Please cancel my order"):
        say(page, text)

    page.locator(".prompt").last.get_by_role("button", name="Keep it").click()
    page.wait_for_selector(".prompt .prompt-result")
    page.wait_for_function(TURN_DONE)

    assert Order.objects.get(pk="37129").status == OrderStatus.PROCESSING


def test_the_page_works_with_the_keyboard_alone(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Terry Whitlock")

    page.get_by_label("Your message").focus()
    page.keyboard.type("My order")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("is 32057")
    page.keyboard.press("Enter")
    page.wait_for_function(TURN_DONE)

    assert (
        page.locator("#transcript .msg-customer .msg-body").last.inner_text()
        == "My order\nis 32057"
    )
    assert "Backpack" in "\n".join(assistant_texts(page))


def test_it_reconnects_by_itself_and_sends_what_was_typed_offline(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Terry Whitlock")
    say(page, "I need help with an order")

    page.context.set_offline(True)
    page.wait_for_selector('#connection[data-state="offline"]')
    box = page.get_by_label("Your message")
    box.fill("My order is 32057")
    box.press("Enter")
    page.context.set_offline(False)
    page.wait_for_selector('#connection[data-state="online"]')
    page.wait_for_function(TURN_DONE)

    customer_texts = page.locator("#transcript .msg-customer .msg-body").all_inner_texts()
    assert customer_texts == ["I need help with an order", "My order is 32057"]
    assert "Backpack" in "\n".join(assistant_texts(page))


def test_a_reload_shows_the_conversation_once(page: Any, base_url: str) -> None:
    sign_in_and_start(page, base_url, "Terry Whitlock")
    say(page, "My order is 32057")

    page.reload()
    page.wait_for_selector('#connection[data-state="online"]')
    page.wait_for_timeout(300)

    seqs = page.locator("#transcript [data-seq]").evaluate_all(
        "nodes => nodes.map(n => n.dataset.seq)"
    )
    assert seqs == sorted(set(seqs), key=int)
    assert page.locator("#transcript .msg-customer").count() == 1
