"""The engine runs without Django, Channels, asyncio or boto3 (only its Bedrock client loads boto3).

``tests/test_architecture.py`` checks the imports as written; this checks what really loads.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PLAIN_MODULES = [
    "chat.engine.client",
    "chat.engine.demo.model",
    "chat.engine.history",
    "chat.engine.loop",
    "chat.engine.prompt",
    "chat.engine.registry",
    "chat.engine.replies",
    "chat.engine.stream",
    "chat.engine.toolcalls",
    "chat.engine.types",
]


def loaded_after_importing(modules: list[str]) -> list[str]:
    # A fresh interpreter, so modules other tests loaded do not hide an import.
    probe = (
        f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted(m for m in ('django', 'boto3', 'botocore', 'asyncio', 'channels') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return list(ast.literal_eval(result.stdout.strip()))


def test_the_engine_imports_no_django_channels_asyncio_or_boto3() -> None:
    assert loaded_after_importing(PLAIN_MODULES) == []


def test_only_the_bedrock_client_loads_boto3() -> None:
    assert loaded_after_importing(["chat.engine.bedrock"]) == ["boto3", "botocore"]
