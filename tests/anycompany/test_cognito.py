"""Sign-in through Amazon Cognito, end to end through Django's test client.

Cognito is the one thing outside the project, so it is the one thing stood in for: its token
and JWKS endpoints run on 127.0.0.1 and the test plays the hosted UI (it issues the code the
browser brings back). Everything else is real: the settings block read from the environment,
mozilla-django-oidc's views and HTTP calls, our backend, the database and the session.
"""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from anycompany.cognito import BACKEND_PATH
from chat.live.sessions import session_user
from orders.models import Customer
from tests.anycompany.cognito_standin import (
    ALICE_SUB,
    BOB_SUB,
    CLIENT_ID,
    CLIENT_SECRET,
    COGNITO_ENV,
    DOMAIN,
    DROP,
    FAILURE_URL,
    ISSUER,
    REGION,
    CognitoStandIn,
    alice_customer,
    assert_refused,
    bob_customer,
    callback,
    cognito_users,
    s256,
    settings_from_env,
    sign_in,
    signed_in_user,
    start_sign_in,
)

if TYPE_CHECKING:
    pass


# --- Settings -------------------------------------------------------------------------------


def test_it_derives_every_endpoint_and_pins_the_secure_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured = settings_from_env(monkeypatch, {**COGNITO_ENV, "COGNITO_DOMAIN": DOMAIN + "/"})
    assert configured["COGNITO_ENABLED"] is True
    assert configured["AUTHENTICATION_BACKENDS"] == [
        BACKEND_PATH,
        "django.contrib.auth.backends.ModelBackend",
    ]
    assert configured["COGNITO_ISSUER"] == ISSUER
    assert configured["OIDC_OP_JWKS_ENDPOINT"] == f"{ISSUER}/.well-known/jwks.json"
    assert configured["OIDC_OP_AUTHORIZATION_ENDPOINT"] == f"{DOMAIN}/oauth2/authorize"
    assert configured["OIDC_OP_TOKEN_ENDPOINT"] == f"{DOMAIN}/oauth2/token"
    assert configured["OIDC_OP_USER_ENDPOINT"] == f"{DOMAIN}/oauth2/userInfo"
    assert (configured["OIDC_RP_CLIENT_ID"], configured["OIDC_RP_CLIENT_SECRET"]) == (
        CLIENT_ID,
        CLIENT_SECRET,
    )
    assert configured["OIDC_RP_SIGN_ALGO"] == "RS256"
    assert configured["OIDC_USE_PKCE"] is True
    assert configured["OIDC_USE_NONCE"] is True
    assert configured["OIDC_TOKEN_USE_BASIC_AUTH"] is True
    assert configured["OIDC_TIMEOUT"] == 10
    assert configured["OIDC_OP_LOGOUT_URL_METHOD"] == "anycompany.cognito.logout_url"


def test_it_is_off_when_no_cognito_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    configured = settings_from_env(monkeypatch, {})
    assert configured["COGNITO_ENABLED"] is False
    assert configured["AUTHENTICATION_BACKENDS"] == ["django.contrib.auth.backends.ModelBackend"]
    assert not any(name.startswith("OIDC_") for name in configured)


@pytest.mark.parametrize("missing", [name for name in COGNITO_ENV if name != "COGNITO_CLIENT_ID"])
def test_a_partial_configuration_fails_naming_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    env = {name: value for name, value in COGNITO_ENV.items() if name != missing}
    with pytest.raises(ImproperlyConfigured, match=missing):
        settings_from_env(monkeypatch, env)


def test_cognito_variables_without_a_client_id_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: value for name, value in COGNITO_ENV.items() if name != "COGNITO_CLIENT_ID"}
    with pytest.raises(ImproperlyConfigured, match="COGNITO_CLIENT_ID"):
        settings_from_env(monkeypatch, env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COGNITO_USER_POOL_ID", "eu-west-1_Example42"),
        ("COGNITO_REGION", "useast1"),
        ("COGNITO_DOMAIN", "http://anycompany.auth.us-east-1.amazoncognito.com"),
        ("COGNITO_DOMAIN", f"{DOMAIN}/oauth2"),
    ],
)
def test_a_malformed_value_fails_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=name):
        settings_from_env(monkeypatch, {**COGNITO_ENV, name: value})


# --- The flow -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_authorization_request_uses_pkce_s256_a_nonce_and_state(
    cognito: CognitoStandIn,
) -> None:
    params = start_sign_in(Client())
    assert params["endpoint"] == f"{DOMAIN}/oauth2/authorize"
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["scope"] == "openid email"
    assert params["redirect_uri"] == "http://testserver/oidc/callback/"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43  # base64url of a SHA-256 digest
    assert len(params["state"]) >= 32
    assert len(params["nonce"]) >= 32


@pytest.mark.django_db
def test_a_valid_id_token_signs_in_a_user_keyed_by_sub_and_linked_to_their_customer(
    cognito: CognitoStandIn,
) -> None:
    alice = alice_customer()
    client = Client()
    response = sign_in(client, cognito, email="Alice_Liddell@Example.com")
    assert response.status_code == 302
    assert response["Location"] == "/"
    user = signed_in_user(client)
    assert user is not None
    assert user.username == f"cognito.{ALICE_SUB}"
    assert user.email == "Alice_Liddell@Example.com"
    assert not user.has_usable_password()
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert client.session[BACKEND_SESSION_KEY] == BACKEND_PATH
    alice.refresh_from_db()
    assert alice.user == user
    # The code went back with the PKCE verifier, and the secret in Basic auth, not in the body.
    [exchange] = cognito.token_requests
    assert "code_verifier" in exchange["form"]
    assert "client_secret" not in exchange["form"]


@pytest.mark.django_db
@pytest.mark.parametrize("verified", [True, "true"])
def test_a_verified_email_in_either_form_links_the_customer(
    cognito: CognitoStandIn, verified: object
) -> None:
    alice = alice_customer()
    sign_in(Client(), cognito, email_verified=verified)
    alice.refresh_from_db()
    assert alice.user is not None
    assert alice.user.username == f"cognito.{ALICE_SUB}"


@pytest.mark.django_db
@pytest.mark.parametrize("verified", [False, "false", DROP])
def test_an_unverified_email_signs_in_but_does_not_link_the_customer(
    cognito: CognitoStandIn, verified: object
) -> None:
    alice = alice_customer()
    client = Client()
    sign_in(client, cognito, email_verified=verified)
    assert signed_in_user(client) is not None
    alice.refresh_from_db()
    assert alice.user is None


def _token_with_wrong_audience(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=nonce, aud="another-app-client-id")


def _token_from_another_pool(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(
        nonce=nonce, iss=f"https://cognito-idp.{REGION}.amazonaws.com/{REGION}_Other"
    )


def _access_token(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=nonce, token_use="access")


def _expired_token(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    now = int(time.time())
    return stand_in.id_token(nonce=nonce, iat=now - 3700, exp=now - 100)


def _token_without_expiry(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=nonce, exp=DROP)


def _token_for_another_sign_in(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce="the-nonce-of-another-sign-in-0123456789")


def _token_without_nonce(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=DROP)


def _token_signed_by_another_key(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=nonce, key=other_key)


def _token_with_an_unknown_key_id(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=nonce, key=other_key, kid="attacker-key")


def _unsigned_token(stand_in: CognitoStandIn, nonce: str, other_key: Any) -> str:
    return stand_in.id_token(nonce=nonce, key="", algorithm="none")


def _token_signed_with_the_client_secret(
    stand_in: CognitoStandIn, nonce: str, other_key: Any
) -> str:
    return stand_in.id_token(nonce=nonce, key=CLIENT_SECRET, algorithm="HS256")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_token",
    [
        _token_with_wrong_audience,
        _token_from_another_pool,
        _access_token,
        _expired_token,
        _token_without_expiry,
        _token_for_another_sign_in,
        _token_without_nonce,
        _token_signed_by_another_key,
        _token_with_an_unknown_key_id,
        _unsigned_token,
        _token_signed_with_the_client_secret,
    ],
    ids=lambda make_token: make_token.__name__.strip("_"),
)
def test_it_refuses_a_bad_id_token_and_creates_no_user(
    cognito: CognitoStandIn,
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    make_token: Callable[[CognitoStandIn, str, Any], str],
) -> None:
    alice = alice_customer()
    client = Client()
    params = start_sign_in(client)
    response = callback(client, cognito, params, make_token(cognito, params["nonce"], keys[1]))
    assert_refused(response, client)
    alice.refresh_from_db()
    assert alice.user is None


@pytest.mark.django_db
def test_a_token_within_the_clock_leeway_is_accepted(cognito: CognitoStandIn) -> None:
    client = Client()
    sign_in(client, cognito, exp=int(time.time()) - 5)
    assert signed_in_user(client) is not None


@pytest.mark.django_db
def test_it_refuses_a_replayed_callback(cognito: CognitoStandIn) -> None:
    alice_customer()
    browser = Client()
    params = start_sign_in(browser)
    code = cognito.issue_code(params, cognito.id_token(nonce=params["nonce"]))
    callback_query = {"code": code, "state": params["state"]}
    assert browser.get("/oidc/callback/", callback_query)["Location"] == "/"
    alice_user = signed_in_user(browser)

    # The callback URL leaks (history, logs): another browser has no such state in its session.
    attacker = Client()
    assert attacker.get("/oidc/callback/", callback_query)["Location"] == FAILURE_URL
    assert signed_in_user(attacker) is None

    # The same browser after signing out: the state was used up by the first callback.
    browser.post("/accounts/logout/")
    assert browser.get("/oidc/callback/", callback_query)["Location"] == FAILURE_URL
    assert signed_in_user(browser) is None
    # Refused before the code was ever sent to Cognito again.
    assert len(cognito.token_requests) == 1
    assert cognito_users() == [alice_user]


@pytest.mark.django_db
def test_a_nonce_is_accepted_only_once_even_when_two_callbacks_race_on_one_state(
    cognito: CognitoStandIn,
) -> None:
    client = Client()
    params = start_sign_in(client)
    # Two tabs that both read the state before either used it up: simulated by a twin entry.
    session = client.session
    session["oidc_states"]["twin-state"] = dict(session["oidc_states"][params["state"]])
    session.save()
    token = cognito.id_token(nonce=params["nonce"])
    assert callback(client, cognito, params, token)["Location"] == "/"
    twin = {**params, "state": "twin-state"}
    assert callback(client, cognito, twin, token)["Location"] == FAILURE_URL


@pytest.mark.django_db
def test_a_code_cognito_refuses_ends_on_the_sign_in_page_not_an_error(
    cognito: CognitoStandIn,
) -> None:
    client = Client()
    params = start_sign_in(client)
    # Bound to another verifier: the stand-in, like Cognito, refuses the exchange.
    code = cognito.issue_code(
        {**params, "code_challenge": s256("another-verifier")},
        cognito.id_token(nonce=params["nonce"]),
    )
    response = client.get("/oidc/callback/", {"code": code, "state": params["state"]})
    assert_refused(response, client)
    page = client.get(FAILURE_URL)
    assert "Signing in with your AnyCompany account did not work" in page.content.decode()


# --- Accounts -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_email_change_at_cognito_keeps_the_same_user(cognito: CognitoStandIn) -> None:
    alice = alice_customer()
    sign_in(Client(), cognito)
    client = Client()
    sign_in(client, cognito, email="alice.liddell@wonderland.example")
    [user] = cognito_users()
    assert signed_in_user(client) == user
    assert user.email == "alice.liddell@wonderland.example"
    alice.refresh_from_db()
    assert alice.user == user


@pytest.mark.django_db
def test_it_never_matches_an_existing_account_by_email(cognito: CognitoStandIn) -> None:
    bob = bob_customer()
    local = User.objects.create_user("bob_builder", email="bob_builder@example.com")
    client = Client()
    sign_in(client, cognito, sub=BOB_SUB, email="bob_builder@example.com")
    user = signed_in_user(client)
    assert user is not None
    assert user != local
    assert user.username == f"cognito.{BOB_SUB}"
    bob.refresh_from_db()
    assert bob.user == user


@pytest.mark.django_db
def test_two_cognito_users_with_one_email_stay_apart_and_only_the_first_is_linked(
    cognito: CognitoStandIn,
) -> None:
    alice = alice_customer()
    first, second = Client(), Client()
    sign_in(first, cognito, sub=ALICE_SUB)
    sign_in(second, cognito, sub=BOB_SUB)
    first_user, second_user = signed_in_user(first), signed_in_user(second)
    assert first_user is not None
    assert second_user is not None
    assert first_user != second_user
    alice.refresh_from_db()
    assert alice.user == first_user


@pytest.mark.django_db
def test_a_customer_linked_to_another_account_is_not_relinked(cognito: CognitoStandIn) -> None:
    alice = alice_customer()
    existing = User.objects.create_user("alice_liddell")
    alice.user = existing
    alice.save(update_fields=["user"])
    client = Client()
    sign_in(client, cognito)
    assert signed_in_user(client) is not None
    alice.refresh_from_db()
    assert alice.user == existing


@pytest.mark.django_db
def test_the_staff_group_grants_staff_and_leaving_it_revokes_it_at_next_sign_in(
    cognito: CognitoStandIn,
) -> None:
    client = Client()
    sign_in(
        client,
        cognito,
        sub=BOB_SUB,
        email="support@anycompany.example",
        **{"cognito:groups": ["staff"]},
    )
    user = signed_in_user(client)
    assert user is not None
    assert (user.is_staff, user.is_superuser) == (True, False)

    user.is_superuser = True  # granted by hand: Cognito sign-in never keeps it
    user.save()
    sign_in(
        Client(),
        cognito,
        sub=BOB_SUB,
        email="support@anycompany.example",
        **{"cognito:groups": ["customers"]},
    )
    user.refresh_from_db()
    assert (user.is_staff, user.is_superuser) == (False, False)


@pytest.mark.django_db
def test_a_deactivated_account_loses_its_session_and_cannot_sign_in_again(
    cognito: CognitoStandIn,
) -> None:
    client = Client()
    sign_in(client, cognito)
    user = signed_in_user(client)
    assert user is not None
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert client.get("/")["Location"].startswith("/accounts/login/")
    assert_refused_again = sign_in(Client(), cognito)
    assert assert_refused_again["Location"] == FAILURE_URL


@pytest.mark.django_db(transaction=True)
def test_the_websocket_sees_the_user_the_http_sign_in_created(cognito: CognitoStandIn) -> None:
    client = Client()
    sign_in(client, cognito)
    # What the websocket's handshake does with the same session cookie.
    user = session_user(SessionStore(session_key=client.session.session_key))
    assert user.is_authenticated
    assert user.get_username() == f"cognito.{ALICE_SUB}"


# --- Sign-in page, passwords and sign-out ---------------------------------------------------


@pytest.mark.django_db
def test_the_sign_in_page_offers_cognito_only_when_configured(cognito: CognitoStandIn) -> None:
    page = Client().get("/accounts/login/?next=/")
    assert "Sign in with your AnyCompany account" in page.content.decode()
    assert 'href="/oidc/authenticate/?next=/"' in page.content.decode()


@pytest.mark.django_db
def test_without_cognito_the_sign_in_page_has_only_the_password_form() -> None:
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    assert "Sign in with your AnyCompany account" not in page.content.decode()


@pytest.mark.django_db
def test_password_sign_in_still_works_and_never_reaches_cognito(
    cognito: CognitoStandIn, alice: Customer
) -> None:
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "alice_liddell", "password": "correct horse 9"}
    )
    assert response.status_code == 302
    assert signed_in_user(client) == alice.user
    assert client.session[BACKEND_SESSION_KEY] == "django.contrib.auth.backends.ModelBackend"
    assert cognito.token_requests == []
    # And signing out stays local for such an account.
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"
    assert signed_in_user(client) is None


@pytest.mark.django_db
def test_signing_out_ends_the_session_and_goes_through_cognitos_logout(
    cognito: CognitoStandIn,
) -> None:
    client = Client()
    sign_in(client, cognito)
    assert signed_in_user(client) is not None
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{DOMAIN}/logout"
    assert parse_qs(location.query) == {
        "client_id": [CLIENT_ID],
        "logout_uri": ["http://testserver/accounts/logged-out/"],
    }
    assert signed_in_user(client) is None
    # Where Cognito sends the browser back to: the sign-in page.
    assert client.get("/accounts/logged-out/")["Location"] == "/accounts/login/"
    assert client.get("/")["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_sign_out_is_post_only(cognito: CognitoStandIn) -> None:
    client = Client()
    sign_in(client, cognito)
    assert client.get("/accounts/logout/").status_code == 405
    assert signed_in_user(client) is not None
