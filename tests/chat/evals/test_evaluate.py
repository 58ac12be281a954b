"""``manage.py evaluate``: the shipped suite, readable failures, a throwaway demo database."""

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from chat.models import Conversation
from orders.models import Order, OrderEvent
from tests.chat.evals.helpers import ROOT, SHIPPED_SUITE, evaluate, write_case

transactional = pytest.mark.django_db(transaction=True)

WRONG_STATUS = """\
customer: "012347"
turns:
  - say: My order is 32057
    expect:
      tools:
        - name: cancel_order
          input: {order_id: "32057"}
      reply_contains: [Delivered]
"""


@pytest.fixture(autouse=True)
def demo_model(settings: Any) -> None:
    settings.CHAT_MODEL = "demo"


@transactional
def test_the_shipped_suite_passes_with_the_demo_model(tmp_path: Path) -> None:
    output, failed = evaluate("--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")

    assert failed is None, output
    names = sorted(path.stem for path in SHIPPED_SUITE.glob("*.yaml"))
    assert len(names) >= 15
    report = json.loads((tmp_path / "r.json").read_text())
    (variant,) = report["variants"]
    assert report["passed"]
    assert variant["label"] == "demo"
    assert sorted(case["name"] for case in variant["cases"]) == names
    summary = variant["summary"]
    assert (summary["passed"], summary["leaks"], summary["tool_accuracy"]) == (len(names), 0, 1.0)
    assert summary["confirmations"] > 0
    assert summary["tokens"]["input"] > 0
    suite = ElementTree.parse(tmp_path / "r.xml").getroot().find("testsuite")  # noqa: S314 (ours)
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == (str(len(names)), "0")
    assert f"pass rate: 100% ({len(names)}/{len(names)} cases)" in output


@transactional
def test_a_wrong_expectation_fails_with_a_readable_reason(tmp_path: Path) -> None:
    write_case(tmp_path, "wrong-status", WRONG_STATUS)

    output, failed = evaluate(tmp_path, "--junit", tmp_path / "r.xml")

    assert failed == "1 eval case(s) failed: wrong-status"
    assert (
        "turn 1 ('My order is 32057'): expected tool call(s) not made: "
        "cancel_order(order_id='32057') (made: get_order_by_id(order_id='32057'))"
    ) in output
    assert (
        "turn 1 ('My order is 32057'): the reply does not contain 'Delivered'; it was "
        "'[Demo model] Your order 32057: 1 × Backpack at $59.99, status Shipped. It is on its way.'"
    ) in output
    assert "unexpected tool call(s): get_order_by_id(order_id='32057')" in output
    junit = ElementTree.parse(tmp_path / "r.xml")  # noqa: S314 (the command's own output)
    failure = junit.getroot().find("testsuite/testcase/failure")
    assert failure is not None
    assert "does not contain 'Delivered'" in (failure.text or "")


@transactional
def test_the_operators_orders_are_never_touched(tmp_path: Path) -> None:
    # The test database stands for the operator's: its own copy of the demo data, no logins.
    call_command("loaddata", "customers", "orders", verbosity=0)
    before = dict(Order.objects.values_list("pk", "status"))

    output, failed = evaluate(
        SHIPPED_SUITE / "sample-cancel-order.yaml", "--json", tmp_path / "r.json"
    )

    assert failed is None, output
    (case,) = json.loads((tmp_path / "r.json").read_text())["variants"][0]["cases"]
    assert case["runs"][0]["final_orders"] == {"37129": "Cancelled"}
    assert dict(Order.objects.values_list("pk", "status")) == before
    assert not OrderEvent.objects.exists()
    assert not Conversation.objects.exists()
    assert not User.objects.exists()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                [f"{connection.settings_dict['NAME'][:40]}_eval_%"],
            )
            assert cursor.fetchall() == []  # the throwaway database is gone


@transactional
def test_repeat_reports_every_run_and_compare_puts_two_prompts_side_by_side(
    tmp_path: Path,
) -> None:
    prompt = tmp_path / "terse.txt"
    prompt.write_text("You are AnyCompany's support assistant. Answer in one sentence.\n")

    output, failed = evaluate(
        SHIPPED_SUITE / "sample-order-lookup.yaml", "--repeat", "2", "--compare", "shipped", prompt
    )

    assert failed is None, output
    comparison = output[output.index("Comparison") :].splitlines()
    assert comparison[2].split() == ["case", "demo", "demo", "+", "terse.txt"]
    assert comparison[3].split() == ["sample-order-lookup", "2/2", "2/2"]
    (rate,) = [line for line in comparison if line.startswith("pass rate")]
    assert rate.split()[2:] == ["100%", "(1/1", "cases)", "100%", "(1/1", "cases)"]


@transactional
def test_the_readmes_example_case_passes(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```yaml\ndescription:") + len("```yaml\n")
    write_case(tmp_path, "readme-example", readme[start : readme.index("```", start)])

    output, failed = evaluate(tmp_path)

    assert failed is None, output


@transactional
def test_a_case_that_cannot_be_set_up_fails_saying_why(tmp_path: Path) -> None:
    write_case(tmp_path, "no-such-customer", 'customer: "999999"\nturns:\n  - say: hi\n')
    write_case(
        tmp_path,
        "someone-elses-order",
        'customer: "901235"\norders:\n'
        '  - {id: "32057", product: Backpack, quantity: 1, price: "59.99", status: Shipped}\n'
        "turns:\n  - say: hi\n",
    )

    output, failed = evaluate(tmp_path)

    assert failed == "2 eval case(s) failed: no-such-customer, someone-elses-order"
    assert (
        "- setup: customer '999999' is not a demo customer (see orders/fixtures/customers.json)"
    ) in output
    assert "- setup: orders: order 32057 belongs to another demo customer; use another id" in output


def test_invalid_case_files_are_all_reported_before_anything_runs(tmp_path: Path) -> None:
    write_case(
        tmp_path,
        "typo",
        'customer: "012347"\nturns:\n  - say: hi\n    expect: {reply_contain: [x]}\n',
    )
    write_case(tmp_path, "unquoted", "customer: 012347\nturns:\n  - say: hi\n")
    write_case(
        tmp_path,
        "no-such-tool",
        'customer: "1"\nturns:\n  - say: hi\n    expect: {tools: [refund]}\n',
    )
    write_case(tmp_path, "broken", 'customer: "1"\nturns:\n  - say: [oops\n')

    output, failed = evaluate(tmp_path)

    assert output == ""
    assert failed is not None
    lines = failed.splitlines()
    assert lines[0] == "Invalid eval cases:"
    broken, no_such_tool, typo, unquoted = sorted(lines[1:])
    assert broken.startswith(f"{tmp_path}/broken.yaml: not valid YAML at line 4, column 1:")
    assert no_such_tool.startswith(
        f"{tmp_path}/no-such-tool.yaml: turns[0].expect.tools[0]: unknown tool 'refund' "
        "(the tools are"
    )
    assert typo == (
        f"{tmp_path}/typo.yaml: turns[0].expect: Additional properties are not allowed "
        "('reply_contain' was unexpected)"
    )
    assert unquoted == (
        f"{tmp_path}/unquoted.yaml: customer: 5351 is not of type 'string' "
        '(write ids and other numbers that are text in quotes, e.g. "012345")'
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "gpt-4"], "'gpt-4' is not a model; use demo, bedrock:<model id"),
        (["--model", "demo", "--replay", "x.json"], "Use either --model or --replay, not both."),
        (["--repeat", "0"], "--repeat must be 1 or more."),
        (["--compare", "demo", "nothing.txt"], "--compare 'nothing.txt' is neither a model"),
        (["--record", "r.json", "--model", "recorded"], "--record records one live model"),
        (["--case", "no-such-case"], "No case name contains 'no-such-case'."),
    ],
)
def test_unusable_options_are_refused_with_what_to_do(arguments: list[str], message: str) -> None:
    _, failed = evaluate(*arguments)

    assert failed is not None
    assert failed.startswith(message)
