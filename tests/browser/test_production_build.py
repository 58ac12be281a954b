"""The app as the README runs it with production settings: DEBUG off, no bucket, daphne alone.

The static files are collected and served by the app itself (hashed, compressed, cached for
good); a customer signs in with a password and has a conversation in a real Chromium.
"""

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from tests.browser.test_chat_browser import (  # noqa: F401 - fixtures
    ROOT,
    TURN_DONE,
    allow_sync_orm_next_to_playwright,
    assistant_texts,
    say,
)
from tests.browser.test_chat_browser import browser as browser  # a fixture, re-exported
from tests.browser.test_chat_browser import demo_data as demo_data  # a fixture, re-exported
from tests.browser.test_chat_browser import page as page  # a fixture, re-exported
from tests.chat.sockets import (  # noqa: F401 - a fixture
    app_server,
    database_sessions_closed,
    database_url,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("database_sessions_closed"),
]

PASSWORD = "violet teapot 1984 orbit"
ONE_YEAR = 365 * 24 * 60 * 60
HASHED_CHAT_JS = re.compile(r"/static/js/chat\.[0-9a-f]{12}\.js$")

# The README's "production settings on your machine": plain HTTP, so no secure-only cookies.
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "anycompany.settings",
    "DEBUG": "false",
    "SECRET_KEY": "a-local-production-run-key-that-is-long-and-random-6d1f0b3e9a27c4",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "AWS_STORAGE_BUCKET_NAME": "",
    "CHAT_MODEL": "demo",
}


def manage(*args: str, **env: str) -> None:
    """``manage.py`` with the production settings, on the test database."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            **PRODUCTION,
            "DATABASE_URL": database_url(connection.settings_dict),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def production_url(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    with django_db_blocker.unblock():
        manage("collectstatic", "--no-input")
        with app_server(env=PRODUCTION) as port:
            yield f"http://127.0.0.1:{port}"


def sign_in_and_start(page: Any, base_url: str) -> None:
    """Terry Whitlock signs in with a password (no demo sign-in without DEBUG)."""
    manage("create_customer_login", "terry_whitlock@example.com", CUSTOMER_LOGIN_PASSWORD=PASSWORD)
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill("terry_whitlock")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_url("**/conversations/*/")


def fetch(url: str, **headers: str) -> Any:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the test server only
    return urllib.request.urlopen(request, timeout=10)  # noqa: S310


def test_a_customer_chats_with_the_apps_own_static_files(
    page: Any, production_url: str, demo_data: None
) -> None:
    sign_in_and_start(page, production_url)
    page.wait_for_selector('#connection[data-state="online"]')
    say(page, "My order is 32057")
    page.wait_for_function(TURN_DONE)

    assert "Backpack" in "\n".join(assistant_texts(page))
    script = page.locator('script[src*="/js/chat."]').first.get_attribute("src")
    stylesheet = page.locator('link[rel="stylesheet"]').first.get_attribute("href")
    assert script is not None
    assert HASHED_CHAT_JS.search(script), script
    assert re.search(r"/static/css/site\.[0-9a-f]{12}\.css$", stylesheet or ""), stylesheet
    assert not page.dialogs
    assert not page.failures


def test_hashed_static_files_are_cached_for_good_and_compressed(
    page: Any, production_url: str, demo_data: None
) -> None:
    sign_in_and_start(page, production_url)
    script = page.locator('script[src*="/js/chat."]').first.get_attribute("src") or ""
    page_policy = fetch(page.url).headers  # signed out: the sign-in page's headers

    plain = fetch(f"{production_url}{script}")
    gzipped = fetch(f"{production_url}{script}", **{"Accept-Encoding": "gzip"})

    assert HASHED_CHAT_JS.search(script), script
    assert plain.status == 200
    assert plain.headers["Content-Type"].startswith("text/javascript")
    cache_control = plain.headers["Cache-Control"]
    assert "immutable" in cache_control
    max_age = int(re.search(r"max-age=(\d+)", cache_control).group(1))  # type: ignore[union-attr]
    assert max_age >= ONE_YEAR
    assert gzipped.headers["Content-Encoding"] == "gzip"
    assert int(gzipped.headers["Content-Length"]) < int(plain.headers["Content-Length"])
    # Same origin only: no inline script and no other host is allowed to run code.
    assert "script-src 'self';" in page_policy["Content-Security-Policy"] + ";"
