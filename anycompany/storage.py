"""Static files as the app serves them when ``DEBUG`` is off (WhiteNoise)."""

from django.core.exceptions import ImproperlyConfigured
from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Content-hashed names (so browsers may cache them for good) with gzip copies.

    Imports between ES modules are rewritten to the hashed names too, so a cached module never
    loads a stale copy of another.
    """

    support_js_module_import_aggregation = True

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            # Otherwise every page fails with "Missing staticfiles manifest entry".
            raise ImproperlyConfigured(
                "The static files have not been collected: run `manage.py collectstatic "
                "--no-input` with the same settings before serving (the container image does "
                "this when it is built)."
            )
        return super().stored_name(name)
