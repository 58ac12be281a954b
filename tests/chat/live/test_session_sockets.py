"""Open sockets do not outlive the session that opened them: signing out, deactivation, session
expiry and lost permissions close them, and every action checks the session again first.

The ASGI stack in-process (the channel layer the settings choose) for most, and the real server
(daphne in its own process) for signing out over HTTP and for the close codes a browser sees.
"""

import asyncio
import contextlib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.live.access import session_check
from chat.live.handoff import handoff_request
from chat.models import Conversation, Message
from tests.chat.handoff_helpers import SUPPORT_AGENT, make_agent
from tests.chat.sockets import (
    RawWebSocket,
    Socket,
    app_server,
    conversation_path,
    database_sessions_closed,  # noqa: F401 - a fixture
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures(
        "database_sessions_closed", "socket_settings", "turns_settled", "turn_pool_stopped"
    ),
]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_socket(client: Client, path: str) -> Socket:
    socket = await Socket(path, cookie=client.cookies["sessionid"].value).connect()
    assert socket.connected
    return socket


def send_frame(text: str = "Where is my order?") -> dict[str, Any]:
    return {"type": "send", "text": text, "client_message_id": uuid.uuid4().hex}


def staff_path(conversation_id: object) -> str:
    return f"/ws/staff/conversations/{conversation_id}/"


# --- The customer's socket ------------------------------------------------------------------------


async def test_signing_out_closes_the_sockets_of_that_session_only(
    conversation: Conversation, alice_user: User
) -> None:
    leaving = await sync_to_async(signed_in)(alice_user)
    staying = await sync_to_async(signed_in)(alice_user)  # another browser
    left = await open_socket(leaving, conversation_path(conversation.pk))
    kept = await open_socket(staying, conversation_path(conversation.pk))

    await sync_to_async(leaving.post)("/accounts/logout/")

    assert await left.closed_with() == 4401
    await kept.send({"type": "ping"})
    assert await kept.receive() == {"type": "pong"}
    await kept.close()


def rotate_secret_key(settings: Any) -> None:
    # What an operator does to rotate SECRET_KEY without signing anyone out.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-rotated-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


async def test_after_the_secret_key_is_rotated_a_socket_opens_without_signing_anyone_out(
    conversation: Conversation, alice_user: User, settings: Any
) -> None:
    client = await sync_to_async(signed_in)(alice_user)  # signed under the old key
    key = client.cookies["sessionid"].value
    rotate_secret_key(settings)

    socket = await open_socket(client, conversation_path(conversation.pk))
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    await socket.close()

    # Channels' own check flushed the session here: the customer was signed out.
    assert [s.session_key async for s in Session.objects.all()] == [key]
    page = await sync_to_async(client.get)("/")
    assert page.status_code == 200


async def test_a_message_sent_after_the_session_ended_is_refused_and_not_stored(
    conversation: Conversation, alice_user: User
) -> None:
    client = await sync_to_async(signed_in)(alice_user)
    socket = await open_socket(client, conversation_path(conversation.pk))
    # Gone without a word to the socket (expired and cleared, or the layer lost the message).
    await Session.objects.all().adelete()

    await socket.send(send_frame())

    assert await socket.closed_with() == 4401
    assert not await Message.objects.filter(conversation=conversation).aexists()


async def test_an_expired_session_refuses_actions_even_while_its_row_remains(
    conversation: Conversation, alice_user: User
) -> None:
    client = await sync_to_async(signed_in)(alice_user)
    socket = await open_socket(client, conversation_path(conversation.pk))
    await Session.objects.aupdate(expire_date=timezone.now() - timedelta(seconds=1))

    await socket.send({"type": "decide", "action_id": str(uuid.uuid4()), "approve": True})

    assert await socket.closed_with() == 4401


async def test_the_socket_closes_by_itself_when_the_session_expires(
    conversation: Conversation, alice_user: User
) -> None:
    client = await sync_to_async(signed_in)(alice_user)
    await Session.objects.aupdate(expire_date=timezone.now() + timedelta(seconds=2))
    socket = await open_socket(client, conversation_path(conversation.pk))

    assert await socket.closed_with(within=20) == 4401


async def test_deactivating_the_account_closes_its_sockets(
    conversation: Conversation, alice_user: User
) -> None:
    client = await sync_to_async(signed_in)(alice_user)
    socket = await open_socket(client, conversation_path(conversation.pk))

    alice_user.is_active = False
    await sync_to_async(alice_user.save)()

    assert await socket.closed_with() == 4401


async def test_changing_the_password_elsewhere_ends_the_sockets_of_older_sessions(
    conversation: Conversation, alice_user: User
) -> None:
    client = await sync_to_async(signed_in)(alice_user)
    socket = await open_socket(client, conversation_path(conversation.pk))

    alice_user.set_password("a brand new passphrase 42")
    await sync_to_async(alice_user.save)()

    assert await socket.closed_with() == 4401


def test_each_action_rereads_session_and_user_in_one_statement(
    alice_user: User, django_assert_num_queries: Any
) -> None:
    key = signed_in(alice_user).cookies["sessionid"].value
    first = session_check(key, alice_user.pk)

    with django_assert_num_queries(1):
        again = session_check(key, alice_user.pk, verified=first.verified)

    assert first.user == again.user == alice_user
    assert first.expires_at == again.expires_at == Session.objects.get(session_key=key).expire_date
    assert again.verified == first.verified is not None


def test_a_session_row_rewritten_under_the_same_key_is_checked_in_full(
    alice_user: User, bob_user: User
) -> None:
    key = signed_in(alice_user).cookies["sessionid"].value
    verified = session_check(key, alice_user.pk).verified
    bobs = Session.objects.get(session_key=signed_in(bob_user).cookies["sessionid"].value)
    Session.objects.filter(session_key=key).update(session_data=bobs.session_data)

    assert session_check(key, alice_user.pk, verified=verified).user is None


@pytest.mark.parametrize(
    "change",
    [
        {"is_active": False},
        {"password": "md5$salt$00000000000000000000000000000000"},
        {"username": "alice2"},  # any column: the verified row is the whole row
    ],
)
def test_a_user_row_changed_without_a_signal_is_checked_in_full(
    alice_user: User, change: dict[str, Any]
) -> None:
    key = signed_in(alice_user).cookies["sessionid"].value
    verified = session_check(key, alice_user.pk).verified
    User.objects.filter(pk=alice_user.pk).update(**change)

    with CaptureQueriesContext(connection) as queries:
        check = session_check(key, alice_user.pk, verified=verified)

    assert len(queries) > 1  # the full check read the user through its backend
    if "username" in change:
        assert check.user == alice_user
        assert check.verified != verified
    else:
        assert check.user is None


def test_an_expired_or_deleted_session_fails_even_when_verified_before(alice_user: User) -> None:
    key = signed_in(alice_user).cookies["sessionid"].value
    verified = session_check(key, alice_user.pk).verified
    Session.objects.filter(session_key=key).update(expire_date=timezone.now())

    assert session_check(key, alice_user.pk, verified=verified).user is None
    Session.objects.filter(session_key=key).delete()
    assert session_check(key, alice_user.pk, verified=verified).user is None


@pytest.fixture
def other_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite (``make run``) and other databases take the ORM path: the same reads and the same
    # ``auth.get_user`` rules, without PostgreSQL's one statement.
    monkeypatch.setattr(connection, "vendor", "sqlite")


@pytest.mark.usefixtures("other_databases")
def test_on_other_databases_the_check_still_follows_every_rule(alice_user: User) -> None:
    key = signed_in(alice_user).cookies["sessionid"].value

    with CaptureQueriesContext(connection) as queries:
        check = session_check(key, alice_user.pk)
    assert len(queries) == 3  # the session, its user, its expiry: not the one statement
    assert check.user == alice_user
    assert check.expires_at == Session.objects.get(session_key=key).expire_date
    assert session_check(key, alice_user.pk + 1).user is None  # someone else's session

    User.objects.filter(pk=alice_user.pk).update(is_active=False)
    assert session_check(key, alice_user.pk).user is None
    User.objects.filter(pk=alice_user.pk).update(is_active=True)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now())
    assert session_check(key, alice_user.pk).user is None
    assert session_check(None, alice_user.pk).user is None


def test_with_sessions_outside_the_database_the_check_follows_the_store(
    alice_user: User, settings: Any
) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    client = signed_in(alice_user)
    key = client.cookies["sessionid"].value

    check = session_check(key, alice_user.pk)
    assert check.user == alice_user
    assert check.expires_at is None  # such a store does not say: the socket re-checks on a timer

    client.logout()
    assert session_check(key, alice_user.pk).user is None


@pytest.mark.parametrize("database", ["postgresql", "other"])
def test_after_the_secret_key_is_rotated_the_check_accepts_the_session_and_keeps_its_key(
    alice_user: User, settings: Any, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    # An operator rotates SECRET_KEY and keeps the old one in SECRET_KEY_FALLBACKS so that nobody
    # is signed out. Django's own rule then gives the session a new key, which only an HTTP
    # response can hand the browser (a cookie). A socket cannot: its check must keep the key, or
    # the browser's cookie names a deleted session and the customer is signed out after all.
    client = signed_in(alice_user)
    key = client.cookies["sessionid"].value
    rotate_secret_key(settings)
    if database == "other":
        monkeypatch.setattr(connection, "vendor", "sqlite")

    check = session_check(key, alice_user.pk)
    again = session_check(key, alice_user.pk, verified=check.verified)

    assert check.user == again.user == alice_user
    assert list(Session.objects.values_list("session_key", flat=True)) == [key]
    # The next page load is still signed in, and rotates the session there, with its cookie.
    assert client.get("/").status_code == 200
    assert client.cookies["sessionid"].value != key
    assert session_check(client.cookies["sessionid"].value, alice_user.pk).user == alice_user


# --- Staff sockets --------------------------------------------------------------------------------


async def test_an_agent_who_loses_the_role_stops_receiving_the_customers_messages(
    conversation: Conversation, alice_user: User
) -> None:
    agent = await sync_to_async(make_agent)("sam", "Sam")
    await sync_to_async(handoff_request)(conversation=conversation, user=None)
    agent_client = await sync_to_async(signed_in)(agent)
    staff = await open_socket(agent_client, staff_path(conversation.pk))
    await staff.receive_until(lambda event: event.get("type") == "handoff")
    await staff.send({"type": "resume", "after_seq": 0})
    inbox = await open_socket(agent_client, "/ws/staff/inbox/")
    await inbox.receive_until(lambda event: event.get("type") == "inbox")

    group = await Group.objects.aget(name=SUPPORT_AGENT)
    await sync_to_async(agent.groups.remove)(group)

    assert await staff.closed_with() == 4403
    assert await inbox.closed_with() == 4403
    customer = await open_socket(
        await sync_to_async(signed_in)(alice_user), conversation_path(conversation.pk)
    )
    await customer.send(send_frame("My card number is 4111 1111 1111 1111"))
    await customer.receive_until(lambda event: event.get("type") == "submitted")
    assert not [event for event in staff.events if "4111" in str(event)]
    await customer.close()


async def test_an_agent_whose_permission_is_gone_gets_no_further_event(
    conversation: Conversation, alice_user: User
) -> None:
    # Even without the signal (a permission removed straight in the database): every event
    # delivered to an agent checks again first.
    agent = await sync_to_async(make_agent)("sam", "Sam")
    await sync_to_async(handoff_request)(conversation=conversation, user=None)
    staff = await open_socket(await sync_to_async(signed_in)(agent), staff_path(conversation.pk))
    await staff.receive_until(lambda event: event.get("type") == "handoff")
    await staff.send({"type": "resume", "after_seq": 0})
    await staff.receive_until(lambda event: event.get("type") == "handoff")
    await User.groups.through.objects.filter(user_id=agent.pk).adelete()

    customer = await open_socket(
        await sync_to_async(signed_in)(alice_user), conversation_path(conversation.pk)
    )
    await customer.send(send_frame("Secret words"))

    assert await staff.closed_with() == 4403
    assert not [event for event in staff.events if "Secret" in str(event)]
    await customer.close()


async def test_with_cognito_a_password_session_cannot_use_the_staff_sockets(
    conversation: Conversation, settings: Any
) -> None:
    settings.COGNITO_ENABLED = True
    settings.ADMIN_BREAK_GLASS_USERNAMES = []
    agent = await sync_to_async(make_agent)("sam", "Sam")
    client = await sync_to_async(signed_in)(agent)  # a password (ModelBackend) session

    for path in ("/ws/staff/inbox/", staff_path(conversation.pk)):
        socket = await open_socket(client, path)
        assert await socket.closed_with() == 4403


# --- The real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[int]:
    with django_db_blocker.unblock(), app_server() as port:
        yield port


def sign_out_over_http(port: int, session_key: str) -> int:
    """Signs the session out the way the page's button does: the form's POST, with its token."""
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/accounts/login/", timeout=10) as page:  # noqa: S310
        cookies = SimpleCookie()
        for header in page.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    token = cookies["csrftoken"].value
    request = urllib.request.Request(  # noqa: S310
        f"{base}/accounts/logout/",
        data=f"csrfmiddlewaretoken={token}".encode(),
        headers={
            "Origin": base,
            "Referer": f"{base}/",
            # Set by hand: the cookies are Secure, which a client keeps off plain HTTP.
            "Cookie": f"sessionid={session_key}; csrftoken={token}",
        },
        method="POST",
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with contextlib.closing(opener.open(request, timeout=10)) as response:
            return int(response.status)
    except urllib.error.HTTPError as answer:  # the redirect after signing out
        return answer.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


async def test_signing_out_over_http_closes_the_open_socket_on_the_real_server(
    server: int, conversation: Conversation, alice_user: User
) -> None:
    session_key = await sync_to_async(_session_of)(alice_user)
    socket = await RawWebSocket.connect(
        server, conversation_path(conversation.pk), cookie=session_key
    )
    await socket.send({"type": "ping"})
    assert (await socket.receive())["type"] == "pong"

    assert await sync_to_async(sign_out_over_http)(server, session_key) in (200, 302)

    assert await socket.closed_with() == 4401
    with contextlib.suppress(OSError):
        await socket.send(send_frame())
    with pytest.raises((ConnectionError, OSError, asyncio.IncompleteReadError)):
        await socket.receive(within=5)
    assert not await Message.objects.filter(conversation=conversation).aexists()


@pytest.mark.parametrize(
    ("who", "path", "code"),
    [
        ("nobody", "conversation", 4401),
        ("alice", "missing", 4404),
        ("alice", "staff", 4403),
    ],
)
async def test_the_real_server_accepts_then_closes_with_the_code_the_page_explains(
    server: int, conversation: Conversation, alice_user: User, who: str, path: str, code: int
) -> None:
    cookie = "nobody" if who == "nobody" else await sync_to_async(_session_of)(alice_user)
    target = {
        "conversation": conversation_path(conversation.pk),
        "missing": conversation_path(uuid.uuid4()),
        "staff": "/ws/staff/inbox/",
    }[path]

    socket = await RawWebSocket.connect(server, target, cookie=cookie)  # HTTP 101, not 403

    assert await socket.closed_with() == code


def _session_of(user: User) -> str:
    return signed_in(user).cookies["sessionid"].value
