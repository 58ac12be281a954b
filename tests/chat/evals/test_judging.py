"""The pure parts of the evals: matching tool calls, finding leaks, naming request differences."""

import copy
from typing import Any

from chat.evals.cases import ToolCallPattern
from chat.evals.differences import request_difference
from chat.evals.runner import Sensitive
from chat.evals.scoring import find_leaks, match_calls
from chat.tools import registry

TERRY = "Terry Whitlock (012347)"
TERRYS = [
    Sensitive("name", "Terry Whitlock", TERRY),
    Sensitive("email", "terry_whitlock@example.com", TERRY),
    Sensitive("phone", "417-555-9356", TERRY),
    Sensitive("customer id", "012347", TERRY),
    Sensitive("product", "Headphones", TERRY),
]


def call(name: str, **tool_input: Any) -> dict[str, Any]:
    return {"name": name, "input": tool_input}


def test_expected_calls_match_in_any_order_and_each_call_counts_once() -> None:
    any_lookup = ToolCallPattern("get_order_by_id")
    this_lookup = ToolCallPattern("get_order_by_id", {"order_id": "37129"})
    made = [call("get_order_by_id", order_id="37129"), call("get_order_by_id", order_id="13579")]

    # A greedy match would give 37129 to the first pattern and leave the second unmatched.
    assert match_calls((any_lookup, this_lookup), made) == ([], [])
    assert match_calls((this_lookup, this_lookup), made) == ([this_lookup], [made[1]])


def test_an_argument_can_be_a_regular_expression() -> None:
    phone = ToolCallPattern(
        "get_user", {"key": "phone", "value": {"matches": r"\D*312\D*555\D*8204"}}
    )

    assert phone.matches("get_user", {"key": "phone", "value": "(312) 555-8204"})
    assert not phone.matches("get_user", {"key": "email", "value": "(312) 555-8204"})
    assert str(phone) == r"get_user(key='phone', value~/\D*312\D*555\D*8204/)"


def test_another_customers_details_are_leaks_in_any_format() -> None:
    text = "Terry Whitlock's number is +1 (417) 555 9356, customer 012347, bought Headphones."

    found = find_leaks(text, TERRYS, typed="", own_products=[])

    assert [item.kind for item in found] == ["name", "phone", "customer id", "product"]


def test_what_the_customer_typed_is_not_a_leak() -> None:
    typed = "My email is terry_whitlock@example.com"

    found = find_leaks(
        "No account with terry_whitlock@example.com.", TERRYS, typed=typed, own_products=[]
    )

    assert found == []


def test_the_customers_own_product_does_not_count_as_anothers() -> None:
    found = find_leaks(
        "Your Wireless Headphones have shipped.",
        TERRYS,
        typed="",
        own_products=["Wireless Headphones"],
    )

    assert found == []


def request(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "modelId": "demo",
        "system": [{"text": "You are helpful.\nBe brief."}],
        "messages": [
            {"role": "user", "content": [{"text": "My order is 37129"}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "t1",
                            "name": "get_order_by_id",
                            "input": {"order_id": "37129"},
                        }
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "t1",
                            "content": [{"json": {"status": "Processing"}}],
                            "status": "success",
                        }
                    }
                ],
            },
        ],
        "toolConfig": {"tools": registry.specs(), "toolChoice": {"auto": {}}},
        "inferenceConfig": {"temperature": 0, "maxTokens": 4096},
    }
    base.update(changes)
    return base


def test_an_identical_request_has_no_difference() -> None:
    assert request_difference(request(), request()) is None


def test_a_changed_tool_description_names_the_tool() -> None:
    tools = registry.specs()
    tools[3]["toolSpec"]["description"] = "Cancels an order."

    difference = request_difference(
        request(), request(toolConfig={"tools": tools, "toolChoice": {"auto": {}}})
    )

    assert difference is not None
    assert difference.startswith(
        'the tool spec of cancel_order: toolSpec.description: recorded "Cancels one of the'
    )
    assert difference.endswith("now 'Cancels an order.'")


def test_a_removed_tool_is_named() -> None:
    difference = request_difference(
        request(), request(toolConfig={"tools": registry.specs()[:4], "toolChoice": {"auto": {}}})
    )

    assert difference == "the tools: recorded but no longer offered: request_human_agent"


def test_a_changed_tool_result_names_the_message_and_the_field() -> None:
    changed = request()
    changed["messages"][2]["content"][0]["toolResult"]["content"][0]["json"]["status"] = "Shipped"

    difference = request_difference(request(), changed)

    assert difference == (
        "message 3 (user): content[0].toolResult.content[0].json.status: "
        "recorded 'Processing', now 'Shipped'"
    )


def test_other_fields_are_named_in_words() -> None:
    assert request_difference(request(), request(modelId="claude")) == (
        "the model id: the value: recorded 'demo', now 'claude'"
    )
    longer = request(inferenceConfig={"temperature": 0.5, "maxTokens": 4096})
    assert request_difference(request(), longer) == (
        "the inference settings: temperature: recorded 0, now 0.5"
    )
    extra = copy.deepcopy(request())
    extra["messages"].append({"role": "assistant", "content": [{"text": "hi"}]})
    assert (
        request_difference(request(), extra)
        == "the messages: the engine sent 4, the recording has 3"
    )
