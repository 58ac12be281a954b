"""The chat page in a real Chromium while Redis is stopped and started again: the page says live
updates are paused, a message is still answered, and the page is live again by itself."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_chat_browser import (  # noqa: F401 - fixtures
    ARTIFACTS,
    allow_sync_orm_next_to_playwright,
    say,
    sign_in_and_start,
)
from tests.browser.test_chat_browser import browser as browser  # a fixture, re-exported
from tests.browser.test_chat_browser import demo_data as demo_data  # a fixture, re-exported
from tests.browser.test_chat_browser import page as page  # a fixture, re-exported
from tests.chat.live.services import ThrowawayRedis, throwaway_redis
from tests.chat.sockets import (
    app_server,
    database_sessions_closed,  # noqa: F401 - a fixture
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.faults,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]


@pytest.fixture(scope="module")
def redis() -> Iterator[ThrowawayRedis]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture(scope="module")
def app_url(django_db_setup: None, django_db_blocker: Any, redis: ThrowawayRedis) -> Iterator[str]:
    env = {
        "DEBUG": "true",
        "DEMO_LOGIN_ENABLED": "true",
        "SECURE_SSL_REDIRECT": "false",
        "REDIS_URL": redis.url,
    }
    with django_db_blocker.unblock(), app_server(runserver=True, env=env) as port:
        yield f"http://127.0.0.1:{port}"


def test_the_page_shows_live_updates_paused_while_redis_is_down_and_recovers(
    page: Any, app_url: str, redis: ThrowawayRedis
) -> None:
    sign_in_and_start(page, app_url, "Terry Whitlock")
    connection = page.locator("#connection")

    redis.stop()
    page.wait_for_selector('#connection[data-state="paused"]')
    assert "Live updates are paused" in connection.inner_text()
    say(page, "My order is 32057")
    replies = page.locator("#transcript .msg-assistant:not(.msg-streaming) .msg-body")
    assert "32057" in replies.last.inner_text()
    page.screenshot(path=str(ARTIFACTS / "live-updates-paused.png"))

    redis.start()
    page.wait_for_selector('#connection[data-state="online"]', timeout=30_000)
    say(page, "Thank you")
    assert replies.count() == 2
    assert page.failures == []
