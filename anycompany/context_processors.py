from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    return {
        "demo_login_enabled": settings.DEMO_LOGIN_ENABLED,
        "demo_model": settings.CHAT_MODEL == "demo",
    }
