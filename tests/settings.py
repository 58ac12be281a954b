"""The project's settings with test-friendly defaults for variables the environment leaves unset."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# A request the tool loop builds wrong fails in botocore, before any network (and Stubber's
# tests rely on it).
os.environ.setdefault("BEDROCK_VALIDATE_REQUESTS", "true")

from anycompany.settings import *  # noqa: F403
from anycompany.settings import STORAGES

# Tests render templates without running collectstatic first.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# ...and WhiteNoise serves them from the app directories, as with DEBUG.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Real password hashing costs ~0.3 s per user on two cores; tests create many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
