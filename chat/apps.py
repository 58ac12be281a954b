from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Conversations"

    def ready(self) -> None:
        from chat.live.access import connect_signals

        # Signing out, deactivation and lost permissions close the user's open sockets.
        connect_signals()
