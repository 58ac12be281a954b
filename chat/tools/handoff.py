"""The ``request_human_agent`` tool: the assistant asks the support team to join.

Not part of the original design. It runs the context's ``request_person``, which the live chat
binds to this conversation, so the tool never imports the live chat.
"""

from typing import Any

from chat.engine.registry import Tool, ToolContext
from chat.engine.types import ToolOutcome

REQUESTED = (
    "A member of the support team has been asked to join and will reply in this chat. Tell the "
    "customer a person will join shortly. You will not be called again until they hand the "
    "conversation back."
)
ALREADY_REQUESTED = (
    "A member of the support team is already on the way or in the chat; tell the customer a "
    "person will reply here."
)


class RequestHumanAgent(Tool):
    name = "request_human_agent"
    description = (
        "Asks a member of the support team to join this conversation. Use it when the customer "
        "asks for a person, or needs help the tools cannot give. The result says a person will "
        "join; tell the customer so. You are not called again until the person hands the "
        "conversation back."
    )
    input_schema = {
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "description": "Optional: what the customer needs, in a few words.",
            }
        },
    }
    status = "Asking our support team to join…"
    prompt_notes = (
        "Call it when the customer asks to talk to a person, or when you cannot help and they "
        "want more help; a member of the support team then joins the chat and you stay silent "
        "until they hand the conversation back."
    )

    def run(self, context: ToolContext, tool_input: dict[str, Any]) -> ToolOutcome:
        requested = context.request_person(str(tool_input.get("reason") or ""))
        return ToolOutcome("success", {"result": REQUESTED if requested else ALREADY_REQUESTED})
