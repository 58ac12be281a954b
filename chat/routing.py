from django.urls import URLPattern, path

from anycompany.signin import staff_session_allowed
from chat.live.consumers import ChatConsumer
from chat.staff.consumers import StaffConversationConsumer, StaffInboxConsumer

# Staff sockets follow the site's rule for staff sessions (with Cognito: signed in through it).
websocket_urlpatterns: list[URLPattern] = [
    path("ws/conversations/<uuid:conversation_id>/", ChatConsumer.as_asgi()),
    path("ws/staff/inbox/", StaffInboxConsumer.as_asgi(session_allowed=staff_session_allowed)),
    path(
        "ws/staff/conversations/<uuid:conversation_id>/",
        StaffConversationConsumer.as_asgi(session_allowed=staff_session_allowed),
    ),
]
