from django.urls import URLPattern, path

from chat.consumers import ChatConsumer
from chat.staff_consumers import StaffConversationConsumer, StaffInboxConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("ws/conversations/<uuid:conversation_id>/", ChatConsumer.as_asgi()),
    path("ws/staff/inbox/", StaffInboxConsumer.as_asgi()),
    path("ws/staff/conversations/<uuid:conversation_id>/", StaffConversationConsumer.as_asgi()),
]
