"""The Django project: settings from the environment, URLs, ASGI entry point, sign-in, health."""
