"""Sign-in through Amazon Cognito's hosted UI, done by Django (authorization code flow + PKCE).

mozilla-django-oidc runs the flow (state, nonce and PKCE verifier kept in the session, the code
exchanged at the token endpoint). This backend replaces what its defaults leave open: the ID
token is verified in full (RS256 only, issuer, audience, ``token_use``, expiry, nonce used once),
and accounts are keyed by Cognito's ``sub`` instead of being matched by email.

The settings (``OIDC_*``, ``COGNITO_ISSUER``, ``COGNITO_DOMAIN``) are derived from the
``COGNITO_*`` environment variables in ``anycompany/settings.py``.
"""

import hashlib
import hmac
import logging
import re
import time
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from orders.services import customer_link_login

logger = logging.getLogger(__name__)

BACKEND_PATH = "anycompany.cognito.CognitoBackend"
STAFF_GROUP = "staff"
# Clock skew tolerated on exp and iat: small, the ID token is used within seconds of being minted.
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "token_use"]
# Cognito's sub is a UUID; anything else is refused rather than put into a username.
_SUB = re.compile(r"[0-9A-Za-z-]{1,128}")
# Why the username and not a model of our own: the sub never changes and the username is
# unique, so "cognito.<sub>" is a lookup key with no migration and no app. The dot (not a
# colon) keeps it valid for Django's username validator, so staff can still edit or deactivate
# these accounts in the admin. Email is never a key: it changes, and two people can share one.
USERNAME_PREFIX = "cognito."


def username_for(sub: str) -> str:
    return f"{USERNAME_PREFIX}{sub}"


def email_verified(claims: dict[str, Any]) -> bool:
    # Cognito sends a boolean in ID tokens but has sent the string "true" elsewhere.
    return claims.get("email_verified") in (True, "true")


def logout_url(request: HttpRequest) -> str:
    """Where sign-out sends the browser (``OIDC_OP_LOGOUT_URL_METHOD``).

    A Cognito session is ended at Cognito too, or "Sign in" would sign the browser straight
    back in. Cognito then returns to ``logout_uri`` (``/accounts/logged-out/``), which must be
    one of the app client's sign-out URLs. Accounts signed in with a password go straight to
    the sign-in page.
    """
    if request.session.get(BACKEND_SESSION_KEY) != BACKEND_PATH:
        return resolve_url(settings.LOGOUT_REDIRECT_URL)
    after = request.build_absolute_uri(reverse("logged_out"))
    query = urlencode({"client_id": settings.OIDC_RP_CLIENT_ID, "logout_uri": after})
    return f"{settings.COGNITO_DOMAIN}/logout?{query}"


class CognitoBackend(OIDCAuthenticationBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issuer: str = settings.COGNITO_ISSUER

    def authenticate(
        self, request: HttpRequest | None, *, nonce: str | None, code_verifier: str | None
    ) -> AbstractBaseUser | None:
        """Only the OIDC callback calls this (it passes the session's nonce and PKCE verifier).

        Keyword-only arguments without defaults make ``django.contrib.auth.authenticate`` skip
        this backend for password sign-ins, so they never reach Cognito.
        """
        if request is None or not nonce or not code_verifier:
            return None
        try:
            user = super().authenticate(request, nonce=nonce, code_verifier=code_verifier)
        except SuspiciousOperation as exc:
            logger.warning("Cognito sign-in refused: %s", exc)
            return None
        except requests.RequestException as exc:
            # Includes Cognito refusing the code (reused, expired, wrong verifier).
            logger.warning("Cognito sign-in failed at the token or key endpoint: %s", exc)
            return None
        if user is None or not self.user_can_authenticate(user):
            return None
        return user

    def get_user(self, user_id: int) -> AbstractBaseUser | None:
        # The library's get_user ignores is_active; a deactivated account must lose its
        # sessions (HTTP and websocket alike), as with Django's own backend.
        return ModelBackend.get_user(self, user_id)

    # --- The ID token ---------------------------------------------------------------------

    def verify_token(self, token: object, **kwargs: Any) -> dict[str, Any]:
        nonce = kwargs.get("nonce")
        if not isinstance(token, str) or not isinstance(nonce, str) or not nonce:
            raise SuspiciousOperation("No ID token, or no nonce to check it against.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"Malformed ID token: {exc}") from exc
        # The algorithm is ours, never the token's: no "none", no HS256 keyed by the client secret.
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise SuspiciousOperation("ID token is not RS256 with a key id.")
        key = self.retrieve_matching_jwk(token).key
        if not isinstance(key, RSAPublicKey):
            raise SuspiciousOperation("The matching signing key is not an RSA public key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": REQUIRED_CLAIMS,
                    "strict_aud": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"ID token refused: {exc}") from exc
        if claims["token_use"] != "id":  # noqa: S105 (a claim value, not a password)
            raise SuspiciousOperation("Not an ID token (token_use is not 'id').")
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(
            token_nonce.encode(), nonce.encode()
        ):
            raise SuspiciousOperation("ID token nonce does not match this sign-in.")
        if not isinstance(claims["sub"], str) or not _SUB.fullmatch(claims["sub"]):
            raise SuspiciousOperation("ID token has an unexpected sub.")
        self._use_nonce_once(nonce, expires_at=claims["exp"])
        return claims

    def retrieve_matching_jwk(self, token: str) -> jwt.PyJWK:
        try:
            return super().retrieve_matching_jwk(token)
        except (KeyError, TypeError, ValueError, jwt.PyJWTError) as exc:
            # A malformed key set or key is a refusal, not a server error.
            raise SuspiciousOperation(f"No usable signing key: {exc!r}") from exc

    def _use_nonce_once(self, nonce: str, *, expires_at: int) -> None:
        # The callback view already drops the state (and its nonce) from the session before
        # the exchange; this also holds across processes if two callbacks race on one state.
        key = "cognito-nonce:" + hashlib.sha256(nonce.encode()).hexdigest()
        ttl = max(int(expires_at - time.time()) + LEEWAY_SECONDS, 1)
        if not cache.add(key, True, timeout=ttl):
            raise SuspiciousOperation("ID token nonce was already used.")

    def get_userinfo(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        # The verified ID token's claims, not the userInfo endpoint: those are signed and
        # checked above, and only the ID token carries cognito:groups.
        return payload

    # --- The Django user ------------------------------------------------------------------

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        # The library requires an email; accounts are keyed by sub, so an email is optional.
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return self.UserModel.objects.filter(username=username_for(claims["sub"]))

    def create_user(self, claims: dict[str, Any]) -> AbstractBaseUser:
        # get_or_create: two racing first sign-ins must not fail on the unique username.
        user, _ = self.UserModel.objects.get_or_create(
            username=username_for(claims["sub"]),
            # Unusable: these accounts never sign in with a password.
            defaults={"password": make_password(None)},
        )
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        groups = claims.get("cognito:groups")
        email = claims.get("email")
        # Longer than the column allows: keep none rather than fail the sign-in.
        user.email = email if isinstance(email, str) and len(email) <= 254 else ""
        user.is_staff = isinstance(groups, list) and STAFF_GROUP in groups
        user.is_superuser = False
        user.save(update_fields=["email", "is_staff", "is_superuser"])
        self._link_customer(user, claims)
        return user

    def _link_customer(self, user: Any, claims: dict[str, Any]) -> None:
        """Links the Customer with this verified email, unless either side is already linked."""
        email = claims.get("email")
        if not isinstance(email, str) or not email or not email_verified(claims):
            return
        if customer_link_login(user=user, email=email) == "email_taken":
            logger.warning(
                "Cognito user %s has the email of a customer linked to another account.",
                claims["sub"],
            )
