"""One map from Bedrock's error codes to the model boundary's errors, for HTTP and stream alike."""

import pytest

from chat.engine.client import (
    ModelBusy,
    ModelError,
    ModelRequestRejected,
    ModelUnavailable,
    error_class,
    stream_error,
)


@pytest.mark.parametrize(
    ("http_code", "stream_event", "expected"),
    [
        ("ThrottlingException", "throttlingException", ModelBusy),
        ("ServiceUnavailableException", "serviceUnavailableException", ModelBusy),
        ("InternalServerException", "internalServerException", ModelUnavailable),
        ("ModelStreamErrorException", "modelStreamErrorException", ModelUnavailable),
        ("ValidationException", "validationException", ModelRequestRejected),
    ],
)
def test_an_error_code_means_the_same_over_http_and_in_a_stream(
    http_code: str, stream_event: str, expected: type[ModelError]
) -> None:
    error = stream_error({stream_event: {"message": "details for the log"}})

    assert error_class(http_code) is expected
    assert type(error) is expected
    assert str(error) == "details for the log"


def test_events_that_are_not_errors_and_unknown_codes_map_to_nothing() -> None:
    assert stream_error({"contentBlockDelta": {"delta": {"text": "hi"}}}) is None
    assert stream_error({"messageStop": {"stopReason": "end_turn"}}) is None
    assert error_class("SomethingNewException") is None


def test_each_error_names_the_turns_error_kind() -> None:
    assert (ModelBusy.kind, ModelUnavailable.kind, ModelRequestRejected.kind) == (
        "busy",
        "unavailable",
        "rejected",
    )
    assert ModelError.kind == "unavailable"
