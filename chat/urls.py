from django.urls import path

from anycompany.signin import staff_session_required
from chat.live import views
from chat.staff import feedback
from chat.staff import views as staff_views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("conversations/new/", views.conversation_new, name="conversation_new"),
    path("conversations/<uuid:conversation_id>/", views.conversation, name="conversation"),
    path(
        "conversations/<uuid:conversation_id>/messages/<int:seq>/feedback/",
        feedback.message_feedback,
        name="message_feedback",
    ),
    # Like the staff sockets (chat/routing.py), with the site's rule for staff sessions.
    path("staff/inbox/", staff_session_required(staff_views.inbox), name="staff_inbox"),
    path(
        "staff/conversations/<uuid:conversation_id>/",
        staff_session_required(staff_views.conversation),
        name="staff_conversation",
    ),
]
