"""The model boundary, in Converse's own shape.

The real Bedrock client (``chat.bedrock``), the offline demo model and test doubles all expose
``converse(**kwargs)`` / ``converse_stream(**kwargs)`` with boto3's keyword names, so the tool loop
never knows which one it talks to. Transport failures arrive as the exceptions below, never as
botocore's, so the loop stays free of boto3.
"""

from typing import Any, Protocol


class ModelClient(Protocol):
    def converse(self, **kwargs: Any) -> dict[str, Any]: ...

    def converse_stream(self, **kwargs: Any) -> dict[str, Any]: ...


class ModelError(Exception):
    """The model call failed; ``customer_message`` is safe to show to the customer."""

    customer_message = "Sorry, the assistant is unavailable right now. Please try again."
    retryable = True


class ModelBusy(ModelError):
    """Throttled, over quota or the service is unavailable: the customer should retry later."""

    customer_message = "The assistant is busy right now. Please try again in a moment."


class ModelUnavailable(ModelError):
    """Timeouts, connection failures or model errors that persisted after a retry."""


class ModelRequestRejected(ModelError):
    """The service rejected the request itself (validation, access denied): our bug or config."""

    customer_message = "Sorry, something went wrong on our side. Please try again later."
    retryable = False
