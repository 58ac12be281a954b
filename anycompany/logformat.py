"""Log output: one JSON object per line in production, readable lines in development.

Both formats carry the ids of :mod:`anycompany.logcontext` and mask anything shaped like an
email address or a phone number, at every level and in tracebacks too. That mask is a safety
net: the rule is that log calls never pass customer text (messages, names, emails, phone
numbers, order contents) at all; log ids, counts and lengths instead.
"""

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from anycompany import logcontext, telemetry

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# North American numbers with separators (312-555-0100, (312) 555-0100, +1 312.555.0100) and
# any run of 10 to 15 digits (3125550100, +441632960961). Ids in this project are shorter, and
# the look-arounds keep UUIDs, decimals and longer digit runs whole.
_PHONE = re.compile(
    r"(?<![\w.-])(?:"
    r"(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r"|\+?\d{10,15}"
    r")(?![\w-])"
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``. Django's
# request loggers also attach the request object, whose text only repeats the path.
_NOT_EXTRAS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request",
    *logcontext.FIELDS,
    "trace_id",
    "span_id",
}


def redact(text: str) -> str:
    """``text`` with email addresses and phone numbers masked."""
    # The email pattern retries every run of word characters in search of an "@": most of a
    # log line's cost when there is none, which is nearly always.
    if "@" in text:
        text = _EMAIL.sub(EMAIL_MASK, text)
    return _PHONE.sub(PHONE_MASK, text)


class LogContextFilter(logging.Filter):
    """Copies the bound ids (and the current trace) onto each record as it is handled.

    A handler filter, so records from every library get them, and they are fixed when the
    record is made, not when a buffering handler formats it later.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        ids = telemetry.current_trace_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event, the ids that are set, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        for name in (*logcontext.FIELDS, "trace_id", "span_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, int) else str(value)
        for name, value in record.__dict__.items():
            if name not in _NOT_EXTRAS and not name.startswith("_"):
                entry[name] = _plain(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """``time level logger event [ids]`` for a person reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name in logcontext.FIELDS
            if getattr(record, name, None) is not None
        )
        if ids:
            first, newline, rest = line.partition("\n")
            line = f"{first} [{ids}]{newline}{rest}"
        return redact(line)


def _plain(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """Django's ``LOGGING``: every record through the context filter to one stream handler."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "anycompany.logformat.LogContextFilter"}},
        "formatters": {
            "json": {"()": "anycompany.logformat.JsonFormatter"},
            "console": {"()": "anycompany.logformat.ConsoleFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"botocore": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
    }
