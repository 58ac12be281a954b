from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from anycompany.signin import SignInForm
from chat.live import views as chat_views
from chat.staff.dashboard import dashboard_view

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="support_dashboard"),
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=SignInForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/demo/", chat_views.demo_login, name="demo_login"),
    path("", include("chat.urls")),
]

if settings.COGNITO_ENABLED:
    from django.views.generic import RedirectView
    from mozilla_django_oidc.views import OIDCLogoutView

    urlpatterns = [
        # Same path and name as Django's sign-out, matched first: the "Sign out" form then also
        # ends the Cognito session (anycompany.cognito.logout_url).
        path("accounts/logout/", OIDCLogoutView.as_view(), name="logout"),
        # Cognito's logout_uri: must be one of the app client's sign-out URLs.
        path("accounts/logged-out/", RedirectView.as_view(pattern_name="login"), name="logged_out"),
        path("oidc/", include("mozilla_django_oidc.urls")),
        *urlpatterns,
    ]
