from django.urls import URLPattern, path

from chat.live.consumers import ChatConsumer
from chat.staff.consumers import StaffConversationConsumer, StaffInboxConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/conversations/<uuid:conversation_id>/", ChatConsumer.as_asgi()),
    path("ws/staff/inbox/", StaffInboxConsumer.as_asgi()),
    path("ws/staff/conversations/<uuid:conversation_id>/", StaffConversationConsumer.as_asgi()),
]
