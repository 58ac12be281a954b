"""The admin action that turns conversations into draft eval cases (support leads only)."""

import io
import zipfile

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from chat.evals.drafts import conversation_draft
from chat.models import Conversation


# "export": the draft leaves the system like an export does, so it takes the same permission
# (chat.export_conversations, which the Support lead role has and the Support agent role lacks).
@admin.action(
    description="Draft an eval case from the selected conversations", permissions=["export"]
)
def draft_eval_case(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse:
    """Downloads one YAML draft per selected conversation (a zip when there are several).

    The file names carry only the time, never the conversation's id or its customer.
    """
    now = timezone.now()
    stamp = now.strftime("%Y%m%d-%H%M%S")
    conversations = list(
        Conversation.objects.filter(pk__in=queryset.values("pk")).select_related("customer")
    )
    drafts = [conversation_draft(conversation, now=now) for conversation in conversations]
    if len(drafts) == 1:
        response = HttpResponse(drafts[0], content_type="application/yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="draft-{stamp}.yaml"'
        return response
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, draft in enumerate(drafts, start=1):
            archive.writestr(f"draft-{stamp}-{number}.yaml", draft)
    response = HttpResponse(buffer.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="eval-drafts-{stamp}.zip"'
    return response
