"""Support agents for handoff tests: staff users in the "Support agent" role."""

from django.contrib.auth.models import Group, Permission, User

SUPPORT_AGENT = "Support agent"
PASSWORD = "correct horse 9"


def support_agent_role() -> Group:
    # The role comes from a data migration; transactional tests flush it away, so make sure.
    group, _ = Group.objects.get_or_create(name=SUPPORT_AGENT)
    group.permissions.add(
        Permission.objects.get(content_type__app_label="chat", codename="reply_conversation")
    )
    return group


def make_agent(username: str, first_name: str, *, password: str = PASSWORD) -> User:
    user = User.objects.create_user(
        username=username, password=password, is_staff=True, first_name=first_name
    )
    user.groups.add(support_agent_role())
    return user
