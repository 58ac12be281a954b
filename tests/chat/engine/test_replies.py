"""What the customer sees of the model's text, whole or streamed."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.engine.replies import ReplyStream, extract_reply, visible_text

ORIGINAL = (
    "Okay, let's see how I can assist you with your order. <thinking>\nTo look up details "
    "about an order, I will need the order ID.\n</thinking>\n\n<reply>\nSure, I'd be happy "
    "to help you with your order. Can you please provide me with the order ID?\n</reply>"
)


def streamed(pieces: list[str], *, include_untagged: bool = True) -> tuple[list[str], str]:
    stream = ReplyStream()
    out = [stream.feed(piece) for piece in pieces]
    out.append(stream.finish(include_untagged=include_untagged))
    return out, "".join(out)


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        (
            ORIGINAL,
            "Sure, I'd be happy to help you with your order. "
            "Can you please provide me with the order ID?",
        ),
        ("Hello there!", "Hello there!"),
        ("<thinking>plan</thinking>\nHello there!", "Hello there!"),
        ("<thinking>plan never closed", ""),
        ("<reply>Unclosed reply", "Unclosed reply"),
        ("<reply>One</reply> narration <reply>Two</reply>", "One\n\nTwo"),
        ("<reply> </reply><reply>Two</reply>", "Two"),
        ("<reply>Hi <thinking>secret</thinking>there</reply>", "Hi there"),
        ("<REPLY>Loud</REPLY>", "Loud"),
        ("<reply>a < b and <b>bold</b></reply>", "a < b and <b>bold</b>"),
        ("carried-on thought\n</thinking>\nJust this.", "Just this."),
        ("The tool says shipped.\n</thinking>\n\n<reply>\nIt shipped.\n</reply>", "It shipped."),
        ("</reply>stray close", "stray close"),
        ("", ""),
    ],
)
def test_it_extracts_the_visible_reply(text: str, visible: str) -> None:
    assert extract_reply(text) == visible


def test_it_can_treat_untagged_text_as_narration() -> None:
    assert extract_reply("Okay, got it.", include_untagged=False) == ""
    assert extract_reply("Okay <reply>Checking.</reply>", include_untagged=False) == "Checking."


def test_it_streams_a_reply_whose_tags_are_split_across_deltas() -> None:
    out, whole = streamed(["<thinking>secret</thi", "nking><rep", "ly>Hel", "lo</rep", "ly>"])

    assert whole == "Hello"
    assert out == ["", "", "Hel", "lo", "", ""]


def test_it_releases_reply_text_as_soon_as_it_arrives() -> None:
    stream = ReplyStream()

    assert stream.feed("<reply>\nYour order ") == "Your order"
    assert stream.feed("shipped") == " shipped"
    assert stream.feed(".\n") == "."
    assert stream.feed("</reply>") == ""
    assert stream.finish() == ""


def test_it_holds_untagged_text_until_the_end() -> None:
    stream = ReplyStream()

    assert stream.feed("Hello ") == ""
    assert stream.feed("there") == ""
    assert stream.finish() == "Hello there"


def test_it_drops_a_tag_cut_off_at_the_end() -> None:
    assert streamed(["<reply>Hi</re"])[1] == "Hi"


def test_it_refuses_to_be_fed_after_finishing() -> None:
    stream = ReplyStream()
    stream.finish()

    with pytest.raises(RuntimeError):
        stream.feed("late")


def test_it_shows_only_replies_of_a_message_that_calls_a_tool() -> None:
    calling = {
        "role": "assistant",
        "content": [
            {"text": "Okay, got it. <thinking>use the tool"},
            {"toolUse": {"toolUseId": "t1", "name": "get_order_by_id", "input": {}}},
        ],
    }
    answering = {"role": "assistant", "content": [{"text": "All done."}]}

    assert visible_text(calling) == ""
    assert visible_text(answering) == "All done."


FRAGMENTS = st.sampled_from(
    [
        "<reply>",
        "</reply>",
        "<thinking>",
        "</thinking>",
        "SECRET",
        "hello",
        " ",
        "\n",
        "<",
        "<b>",
        "a<b",
        "re",
        "ply>",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(FRAGMENTS, max_size=14), st.lists(st.integers(0, 60), max_size=6), st.booleans())
def test_streaming_shows_exactly_what_the_whole_text_shows(
    fragments: list[str], cuts: list[int], include_untagged: bool
) -> None:
    text = "".join(fragments)
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]

    _, whole = streamed(pieces, include_untagged=include_untagged)

    assert whole == extract_reply(text, include_untagged=include_untagged)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["<reply>", "</reply>", "hi", " ", "x<y"]), max_size=10))
def test_thinking_never_shows(fragments: list[str]) -> None:
    text = "<thinking>SECRET</thinking>" + "".join(fragments) + "<thinking>SECRET more"

    assert "SECRET" not in extract_reply(text)
