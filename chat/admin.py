"""Django's admin autodiscovery imports ``chat.admin``; the ModelAdmins are ``chat.staff.admin``."""

from chat.staff import admin  # noqa: F401
