"""The floor: the model calls of a turn made directly with boto3 against the stand-in, no server.

The stand-in keeps the request bodies the server sent; replaying them here gives what those same
calls cost through the real boto3 client (signing, serialisation, HTTP, event-stream parsing) and
the stand-in, so that "server time beyond the model calls" is a turn's time minus this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config


class FloorError(RuntimeError):
    """A replayed call did not come back as the stand-in's script says it must."""


@dataclass(frozen=True)
class Call:
    model_id: str
    operation: str  # "converse-stream" or "converse", as in the request path
    body: dict[str, Any]  # the JSON body the server sent: boto3's keyword arguments but modelId


@dataclass(frozen=True)
class Outcome:
    stop_reason: str | None
    text: str
    tool_uses: list[dict[str, Any]]
    events: int


def bedrock_client(endpoint_url: str, *, pool: int = 10) -> Any:
    """A ``bedrock-runtime`` client configured like the app's (standard retries, timeouts, no
    request validation: ``BEDROCK_VALIDATE_REQUESTS``'s default)."""
    session = boto3.session.Session(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - the stand-in checks no signature
        region_name="us-east-1",
    )
    return session.client(
        "bedrock-runtime",
        endpoint_url=endpoint_url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=pool,
            parameter_validation=False,
        ),
    )


def call(client: Any, model_call: Call) -> Outcome:
    """Makes one call and reads it to the end, as the app's tool loop does."""
    if model_call.operation == "converse":
        response = client.converse(modelId=model_call.model_id, **model_call.body)
        content = response["output"]["message"]["content"]
        return Outcome(
            response.get("stopReason"),
            "".join(block.get("text", "") for block in content),
            [block["toolUse"] for block in content if "toolUse" in block],
            1,
        )
    response = client.converse_stream(modelId=model_call.model_id, **model_call.body)
    stop_reason: str | None = None
    texts: list[str] = []
    tool_uses: list[dict[str, Any]] = []
    events = 0
    for event in response["stream"]:
        events += 1
        if "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]["delta"]
            if "text" in delta:
                texts.append(delta["text"])
            elif "toolUse" in delta:
                tool_uses[-1]["input"] += delta["toolUse"]["input"]
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]["start"]
            if "toolUse" in start:
                tool_uses.append({**start["toolUse"], "input": ""})
        elif "messageStop" in event:
            stop_reason = event["messageStop"]["stopReason"]
    return Outcome(stop_reason, "".join(texts), tool_uses, events)


def replay(client: Any, calls: list[Call], *, repeats: int) -> list[float]:
    """Seconds each replay of ``calls`` (one after another, like a turn) took.

    Raises: ``FloorError`` when a call ends without a stop reason, or the turn's last call does
    not end it (``end_turn``): the stand-in and the captured calls no longer match.
    """
    if not calls:
        raise FloorError("No captured calls to replay.")
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        outcomes = [call(client, model_call) for model_call in calls]
        durations.append(time.perf_counter() - started)
        if any(outcome.stop_reason is None for outcome in outcomes):
            raise FloorError("A replayed call ended without a stop reason.")
        if outcomes[-1].stop_reason != "end_turn":
            raise FloorError(f"The last replayed call stopped at {outcomes[-1].stop_reason!r}.")
    return durations
