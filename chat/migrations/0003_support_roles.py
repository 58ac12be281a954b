"""The two staff roles, with only the permissions each needs.

Permissions are created here first: on a fresh database they would otherwise only appear in
the post_migrate signal, after this migration has run.
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SUPPORT_AGENT = "Support agent"
SUPPORT_LEAD = "Support lead"

AGENT_PERMISSIONS = [
    ("orders", "view_customer"),
    ("orders", "view_order"),
    ("orders", "view_orderevent"),
    ("orders", "cancel_order"),
    ("chat", "view_conversation"),
    ("chat", "view_message"),
    ("chat", "view_modelcall"),
    ("chat", "reply_conversation"),
]
LEAD_PERMISSIONS = [
    *AGENT_PERMISSIONS,
    ("chat", "view_dashboard"),
    ("chat", "export_conversations"),
]


def create_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    using = schema_editor.connection.alias
    for label in ("auth", "orders", "chat"):
        app_config = apps.get_app_config(label)
        # create_permissions skips app configs without a models module (historical ones).
        app_config.models_module = True  # type: ignore[assignment]
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in ((SUPPORT_AGENT, AGENT_PERMISSIONS), (SUPPORT_LEAD, LEAD_PERMISSIONS)):
        group, _ = Group.objects.using(using).get_or_create(name=name)
        permissions = []
        for app_label, codename in wanted:
            permissions.append(
                Permission.objects.using(using).get(
                    content_type__app_label=app_label, codename=codename
                )
            )
        group.permissions.set(permissions)


def remove_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(
        name__in=[SUPPORT_AGENT, SUPPORT_LEAD]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0002_order_cancel_permission"),
        ("chat", "0002_backoffice"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
