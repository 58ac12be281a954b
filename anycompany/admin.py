"""The admin site: its sign-in form and who may use it (see ``anycompany.signin``)."""

from django.contrib import admin
from django.http import HttpRequest

from anycompany.signin import AdminSignInForm, staff_session_allowed


class SupportAdminSite(admin.AdminSite):
    login_form = AdminSignInForm
    login_template = "admin/support_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and staff_session_allowed(request)
