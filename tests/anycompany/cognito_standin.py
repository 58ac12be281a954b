"""A stand-in for Amazon Cognito (its token and JWKS endpoints on 127.0.0.1), the settings it
implies, and helpers that play the hosted UI, for tests of Cognito sign-in."""

import base64
import hashlib
import importlib
import json
import runpy
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import clear_url_caches

import anycompany.settings
from orders.models import Customer
from tests.conftest import make_customer

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

REGION = "us-east-1"
POOL = "us-east-1_Example42"
CLIENT_ID = "4example0client0id0abcdefgh"
CLIENT_SECRET = "example-client-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
DOMAIN = "https://anycompany.auth.us-east-1.amazoncognito.com"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"
COGNITO_ENV = {
    "COGNITO_REGION": REGION,
    "COGNITO_USER_POOL_ID": POOL,
    "COGNITO_CLIENT_ID": CLIENT_ID,
    "COGNITO_CLIENT_SECRET": CLIENT_SECRET,
    "COGNITO_DOMAIN": DOMAIN,
}
ALICE_SUB = "8f6b1c2e-1111-4a5b-9c3d-a11ce0000001"
BOB_SUB = "8f6b1c2e-2222-4a5b-9c3d-b0b000000002"
FAILURE_URL = "/accounts/login/?error=cognito"
DROP = object()  # a claim value meaning "leave this claim out"


def alice_customer() -> Customer:
    return make_customer("012345", "Alice Liddell", phone="312-555-0100")


def bob_customer() -> Customer:
    return make_customer("054321", "Bob Builder", phone="415-555-0199")


# --- The stand-in for Cognito -------------------------------------------------------------


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@dataclass
class CognitoStandIn:
    """Cognito's /oauth2/token and JWKS on a local port; the test plays the hosted UI."""

    key: rsa.RSAPrivateKey
    url: str = ""
    kid: str = "stand-in-key-1"
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: list[dict[str, Any]] = field(default_factory=list)

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def id_token(
        self,
        *,
        nonce: object,
        sub: str = ALICE_SUB,
        email: str = "alice_liddell@example.com",
        key: Any = None,
        algorithm: str = "RS256",
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "sub": sub,
            "aud": CLIENT_ID,
            "iss": ISSUER,
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + 3600,
            "email": email,
            "email_verified": True,
            "cognito:username": sub,
            "nonce": nonce,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not DROP}
        signing_key = self.key if key is None else key
        return jwt.encode(
            payload, signing_key, algorithm=algorithm, headers={"kid": kid or self.kid}
        )

    def issue_code(self, authorize_params: dict[str, str], id_token: str) -> str:
        """What the hosted UI does after the person signs in: a one-time code bound to PKCE."""
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "code_challenge": authorize_params["code_challenge"],
            "redirect_uri": authorize_params["redirect_uri"],
            "id_token": id_token,
        }
        return code

    def exchange(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        self.token_requests.append({"form": form, "authorization": authorization})
        grant = self.codes.pop(form.get("code", ""), None)  # codes are single-use, as at Cognito
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if (
            grant is None
            or authorization != f"Basic {basic}"
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant["redirect_uri"]
            or s256(form.get("code_verifier", "")) != grant["code_challenge"]
        ):
            return 400, {"error": "invalid_grant"}
        return 200, {
            "id_token": grant["id_token"],
            "access_token": "stand-in-access-token",
            "token_type": "Bearer",
            "expires_in": 3600,
        }


def serve(stand_in: CognitoStandIn) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/jwks.json":
                self._reply(200, stand_in.jwks())
            else:
                self._reply(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            form = {name: values[0] for name, values in parse_qs(body).items()}
            if self.path == "/oauth2/token":
                self._reply(*stand_in.exchange(form, self.headers.get("Authorization")))
            else:
                self._reply(404, {"error": "not_found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    return server


# --- Fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Cognito's signing key, and another key an attacker might sign with."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    """Runs the real settings module with these environment variables."""
    for name in (
        "COGNITO_REGION",
        "COGNITO_USER_POOL_ID",
        "COGNITO_CLIENT_ID",
        "COGNITO_CLIENT_SECRET",
        "COGNITO_DOMAIN",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(Path(anycompany.settings.__file__)))


def reload_urlconf() -> None:
    # urls.py adds the OIDC routes only when Cognito is configured, at import time.
    importlib.reload(importlib.import_module(settings.ROOT_URLCONF))
    clear_url_caches()


@pytest.fixture
def cognito(
    monkeypatch: pytest.MonkeyPatch, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> Iterator[CognitoStandIn]:
    """Cognito configured through the environment, with its endpoints on a local port.

    Settings are computed once at start-up, so the real settings module is run again with the
    COGNITO_* variables and its results applied with override_settings. mozilla-django-oidc
    reads settings when its views and backends are instantiated (per request), except the view
    class paths in mozilla_django_oidc.urls, which we leave at their defaults.
    """
    stand_in = CognitoStandIn(key=keys[0])
    server = serve(stand_in)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    configured = settings_from_env(monkeypatch, COGNITO_ENV)
    overrides = {
        name: value
        for name, value in configured.items()
        if name.startswith(("OIDC_", "COGNITO_"))
        or name in {"AUTHENTICATION_BACKENDS", "LOGIN_REDIRECT_URL_FAILURE"}
    }
    overrides["OIDC_OP_TOKEN_ENDPOINT"] = f"{stand_in.url}/oauth2/token"
    overrides["OIDC_OP_JWKS_ENDPOINT"] = f"{stand_in.url}/.well-known/jwks.json"
    try:
        with override_settings(**overrides):
            reload_urlconf()
            yield stand_in
    finally:
        reload_urlconf()
        server.shutdown()
        server.server_close()


# --- Helpers --------------------------------------------------------------------------------


def start_sign_in(client: Client) -> dict[str, str]:
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    params = {name: values[0] for name, values in parse_qs(location.query).items()}
    return {**params, "endpoint": f"{location.scheme}://{location.netloc}{location.path}"}


def callback(
    client: Client, stand_in: CognitoStandIn, params: dict[str, str], id_token: str
) -> "TestResponse":
    code = stand_in.issue_code(params, id_token)
    return client.get("/oidc/callback/", {"code": code, "state": params["state"]})


def sign_in(client: Client, stand_in: CognitoStandIn, **claims: Any) -> "TestResponse":
    params = start_sign_in(client)
    return callback(client, stand_in, params, stand_in.id_token(nonce=params["nonce"], **claims))


def signed_in_user(client: Client) -> User | None:
    user_id = client.session.get(SESSION_KEY)
    return None if user_id is None else User.objects.get(pk=user_id)


def cognito_users() -> list[User]:
    return list(User.objects.filter(username__startswith="cognito."))


def assert_refused(response: "TestResponse", client: Client) -> None:
    assert response.status_code == 302
    assert response["Location"] == FAILURE_URL
    assert signed_in_user(client) is None
    assert cognito_users() == []
