"""The model boundary, in Converse's own shape.

The real Bedrock client (``chat.engine.bedrock``), the offline demo model and test doubles all
expose ``converse_stream(**kwargs)`` with boto3's keyword names and response shape, so the tool
loop never knows which one it talks to. Failures arrive as the exceptions below, never as
botocore's, so the loop stays free of boto3.

``error_class`` is the one map from Bedrock's error codes to those exceptions: the Bedrock client
uses it for HTTP and in-stream errors, the loop for error events a stream delivers as data.
"""

from typing import Any, Protocol


class ModelClient(Protocol):
    def converse_stream(self, **kwargs: Any) -> dict[str, Any]: ...


class ModelError(Exception):
    """The model call failed; ``customer_message`` is safe to show to the customer."""

    customer_message = "Sorry, the assistant is unavailable right now. Please try again."
    retryable = True
    kind = "unavailable"  # the turn's error_kind when this ends it


class ModelBusy(ModelError):
    """Throttled, over quota or the service is unavailable: the customer should retry later."""

    customer_message = "The assistant is busy right now. Please try again in a moment."
    kind = "busy"


class ModelUnavailable(ModelError):
    """Timeouts, connection failures or model errors that persisted after a retry."""


class ModelRequestRejected(ModelError):
    """The service rejected the request itself (validation, access denied): our bug or config."""

    customer_message = "Sorry, something went wrong on our side. Please try again later."
    retryable = False
    kind = "rejected"


# Compared in lower case: in-stream exception events use camelCase names
# ("throttlingException") while HTTP errors use the shape name ("ThrottlingException").
# ModelNotReadyException means the model is being loaded: nothing is wrong with the request and
# it will be served shortly, which is what "busy" tells the customer.
_ERROR_CODES: dict[str, type[ModelError]] = {
    "throttlingexception": ModelBusy,
    "toomanyrequestsexception": ModelBusy,
    "servicequotaexceededexception": ModelBusy,
    "serviceunavailableexception": ModelBusy,
    "modelnotreadyexception": ModelBusy,
    "modeltimeoutexception": ModelUnavailable,
    "modelerrorexception": ModelUnavailable,
    "internalserverexception": ModelUnavailable,
    "modelstreamerrorexception": ModelUnavailable,
    "validationexception": ModelRequestRejected,
    "accessdeniedexception": ModelRequestRejected,
    "resourcenotfoundexception": ModelRequestRejected,
    "unrecognizedclientexception": ModelRequestRejected,
    "invalidsignatureexception": ModelRequestRejected,
    "expiredtokenexception": ModelRequestRejected,
}


def error_class(code: str) -> type[ModelError] | None:
    """The exception for a Bedrock error code (any case), or None for a code we do not know."""
    return _ERROR_CODES.get(code.lower())


def stream_error(event: dict[str, Any]) -> ModelError | None:
    """The exception a ConverseStream error event stands for (``{"throttlingException": …}``)."""
    for key, body in event.items():
        found = error_class(key)
        if found is not None:
            message = body.get("message") if isinstance(body, dict) else None
            return found(str(message or key))
    return None
