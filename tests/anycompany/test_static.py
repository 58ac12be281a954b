"""Static files without DEBUG: hashed names from the manifest, or a clear error without one."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from anycompany.storage import HashedStaticFilesStorage
from tests.anycompany.test_settings import PRODUCTION, run_manage


def test_rendering_without_collected_files_says_to_run_collectstatic(tmp_path: Path) -> None:
    storage = HashedStaticFilesStorage(location=tmp_path, base_url="/static/")

    with pytest.raises(ImproperlyConfigured, match=r"manage\.py collectstatic --no-input"):
        storage.url("css/site.css")


def test_collected_files_get_hashed_names_and_gzip_copies(tmp_path: Path, settings) -> None:
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "anycompany.storage.HashedStaticFilesStorage"},
    }
    call_command("collectstatic", "--no-input", verbosity=0)
    storage = HashedStaticFilesStorage(location=tmp_path, base_url="/static/")

    url = storage.url("js/chat.js")
    assert url.startswith("/static/js/chat.")
    assert url != "/static/js/chat.js"
    hashed = tmp_path / url.removeprefix("/static/")
    assert hashed.is_file()
    assert hashed.with_name(hashed.name + ".gz").is_file()


def test_static_files_on_s3_need_a_public_domain() -> None:
    env = {**PRODUCTION, "STATIC_STORAGE": "s3"}

    result = run_manage("check", env=env)

    assert result.returncode != 0
    assert "STATIC_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME and AWS_S3_CUSTOM_DOMAIN" in (
        result.stderr
    )


def test_an_unknown_static_storage_is_named() -> None:
    result = run_manage("check", env={**PRODUCTION, "STATIC_STORAGE": "cdn"})

    assert "STATIC_STORAGE must be app or s3 (got 'cdn')." in result.stderr


SHOW_SETTINGS = (
    "import json; from django.conf import settings; print(json.dumps({"
    "'static': settings.STORAGES['staticfiles'], 'media': settings.STORAGES['default'], "
    "'script_src': settings.SECURE_CSP['script-src']}))"
)


def production_settings(**env: str) -> dict[str, Any]:
    result = run_manage("shell", "-c", SHOW_SETTINGS, env={**PRODUCTION, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_by_default_the_app_serves_static_files_and_the_bucket_holds_private_media() -> None:
    configured = production_settings()

    assert configured["static"] == {"BACKEND": "anycompany.storage.HashedStaticFilesStorage"}
    assert configured["media"]["BACKEND"] == "storages.backends.s3.S3Storage"
    assert configured["media"]["OPTIONS"]["querystring_auth"] is True
    assert configured["script_src"] == ["'self'"]


def test_an_operator_can_put_static_files_behind_cloudfront_with_unsigned_urls() -> None:
    configured = production_settings(
        STATIC_STORAGE="s3", AWS_S3_CUSTOM_DOMAIN="static.support.example.com"
    )

    static = configured["static"]
    assert static["BACKEND"] == "storages.backends.s3.S3ManifestStaticStorage"
    assert static["OPTIONS"]["querystring_auth"] is False
    assert static["OPTIONS"]["custom_domain"] == "static.support.example.com"
    assert "immutable" in static["OPTIONS"]["object_parameters"]["CacheControl"]
    assert configured["script_src"] == ["'self'", "https://static.support.example.com"]
