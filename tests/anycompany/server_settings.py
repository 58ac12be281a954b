"""Settings for an app server a test starts in its own process, its log also in a file."""

import copy
import os
from typing import Any

from tests.settings import *  # noqa: F403
from tests.settings import LOGGING as BASE_LOGGING

# Every record, tracebacks included, also goes to the file the test reads.
_logging: dict[str, Any] = copy.deepcopy(BASE_LOGGING)
_logging["handlers"]["file"] = {
    "class": "logging.FileHandler",
    "filename": os.environ["TEST_SERVER_LOG"],
    "formatter": "console",
}
_logging["root"]["handlers"].append("file")
LOGGING = _logging
