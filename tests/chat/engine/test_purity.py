import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_tool_loop_imports_no_django_boto3_or_asyncio() -> None:
    # A fresh interpreter, so modules other tests loaded do not hide an import.
    probe = (
        "import sys, chat.agent, chat.history, chat.replies; "
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
    assert result.stdout.strip() == "[]"
