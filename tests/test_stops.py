"""Stop sequences, UTF-8 across token boundaries, and text-to-token attribution."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.engine.stops import StopMatcher, TokenText, Utf8Decoder


def run(stops: list[str], chunks: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    for chunk in chunks:
        text, stopped = matcher.push(chunk)
        out.append(text)
        if stopped:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


def reference(stops: list[str], text: str) -> tuple[str, bool]:
    """The text before the stop that is complete first (ties: the one starting first)."""
    hits = [(text.find(s) + len(s), text.find(s)) for s in stops if s and s in text]
    if not hits:
        return text, False
    return text[: min(hits)[1]], True


def test_no_stops_passes_everything_through() -> None:
    matcher = StopMatcher([])
    assert matcher.push("Hello") == ("Hello", False)
    assert matcher.push(" world") == (" world", False)
    assert matcher.flush() == ""
    assert matcher.emitted == 11


def test_empty_stop_strings_are_ignored() -> None:
    assert run(["", "x"], ["ab", "cx"]) == ("abc", True)
    assert run([""], ["ab"]) == ("ab", False)


def test_stop_inside_one_chunk() -> None:
    matcher = StopMatcher(["\n\n"])
    assert matcher.push("Hello\n\nworld") == ("Hello", True)
    assert matcher.push("more") == ("", True)
    assert matcher.flush() == ""


def test_stop_split_across_pushes() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.push("The E") == ("The ", False)
    assert matcher.held == 1
    assert matcher.push("N") == ("", False)
    assert matcher.held == 2
    assert matcher.push("D and more") == ("", True)
    assert matcher.emitted == 4


def test_partial_prefix_held_back_then_released() -> None:
    matcher = StopMatcher(["</answer>"])
    assert matcher.push("x </ans") == ("x ", False)
    assert matcher.held == 5
    assert matcher.push("wer") == ("", False)
    assert matcher.push("ed") == ("</answered", False)
    assert matcher.held == 0
    assert matcher.push(" <") == (" ", False)
    assert matcher.flush() == "<"
    assert matcher.emitted == len("x </answered <")


def test_stop_at_very_start() -> None:
    assert run(["<|end|>"], ["<|end|>tail"]) == ("", True)
    assert run(["<|end|>"], ["<", "|e", "nd|", ">", "tail"]) == ("", True)


def test_multiple_stops_earliest_wins() -> None:
    assert run(["STOP2", "STOP1"], ["abc STOP1 def STOP2"]) == ("abc ", True)
    assert run(["STOP2", "STOP1"], ["abc ST", "OP", "2 x STOP1"]) == ("abc ", True)


def test_stop_completed_first_wins_over_longer_one_starting_earlier() -> None:
    # as tokens stream in, "bc" is complete before "abcd" could be: generation stops there
    assert run(["abcd", "bc"], ["a", "b", "c", "d"]) == ("a", True)
    assert run(["abcd", "bc"], ["abcd"]) == ("a", True)
    # same end: the longer one, starting first, wins
    assert run(["cd", "abcd"], ["xabcd"]) == ("x", True)


def test_overlapping_prefixes_keep_the_longest_candidate() -> None:
    matcher = StopMatcher(["aab"])
    assert matcher.push("aa") == ("", False)
    assert matcher.push("a") == ("a", False)
    assert matcher.push("b") == ("", True)
    assert matcher.emitted == 1


def test_flush_releases_a_prefix_that_never_completed() -> None:
    assert run(["###"], ["answer #", "#"]) == ("answer ##", False)


def test_unicode_stop_strings() -> None:
    assert run(["日本"], ["私は日", "本人です"]) == ("私は", True)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab\né", max_size=30),
    stops=st.lists(st.text(alphabet="ab\né", min_size=1, max_size=4), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=10),
)
def test_chunking_never_changes_the_result(text: str, stops: list[str], cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    chunks = [text[i:j] for i, j in itertools.pairwise(bounds)]
    expected = reference(stops, text)
    assert run(stops, chunks) == expected
    assert run(stops, list(text)) == expected
    assert run(stops, [text]) == expected


def test_utf8_decoder_joins_split_characters() -> None:
    decoder = Utf8Decoder()
    data = "é🙂".encode()
    out = [decoder.decode(data[i : i + 1]) for i in range(len(data))]
    assert out == ["", "é", "", "", "", "🙂"]
    assert not decoder.pending
    assert decoder.flush() == ""


def test_utf8_decoder_replaces_invalid_now_and_unfinished_at_flush() -> None:
    decoder = Utf8Decoder()
    assert decoder.decode(b"a\xffb") == "a\ufffdb"
    assert decoder.decode(b"\xe6\x97") == ""
    assert decoder.pending
    assert decoder.flush() == "\ufffd"


def test_token_text_attributes_items_to_their_text() -> None:
    stream: TokenText[int] = TokenText(["\n\n"])
    first = stream.push(b"Hello", 0)
    assert (first.text, first.items, first.stopped) == ("Hello", [0], False)
    held = stream.push(b" world\n", 1)
    assert (held.text, held.items) == (" world", [])
    done = stream.push(b"\nBye", 2)
    assert (done.text, done.items, done.stopped) == ("", [1], True)
    assert stream.push(b"more", 3) == stream.finish()
    assert stream.finish().text == ""


def test_token_text_split_character_released_with_the_token_that_completes_it() -> None:
    stream: TokenText[str] = TokenText([])
    data = "né".encode()
    first = stream.push(data[:2], "t0")  # "n" + first byte of "é"
    assert (first.text, first.items) == ("n", [])
    second = stream.push(data[2:], "t1")
    assert (second.text, second.items) == ("é", ["t0", "t1"])


def test_token_text_drops_tokens_wholly_inside_the_stop() -> None:
    stream: TokenText[int] = TokenText(["STOP"])
    first = stream.push(b"ok S", 0)
    assert (first.text, first.items) == ("ok ", [])
    assert stream.push(b"TO", 1).items == []
    last = stream.push(b"P!", 2)
    assert (last.text, last.items, last.stopped) == ("", [0], True)


def test_token_text_finish_flushes_held_text_and_unfinished_bytes() -> None:
    stream: TokenText[int] = TokenText(["xyz"])
    assert stream.push(b"abc x", 0).text == "abc "
    assert stream.push(b"\xe6", 1).items == []
    end = stream.finish()
    assert (end.text, end.items, end.stopped) == ("x\ufffd", [0, 1], False)


def test_token_text_without_items() -> None:
    stream: TokenText[int] = TokenText(["."])
    assert stream.push(b"a.b").text == "a"
    assert stream.stopped


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet="ab\né🙂", max_size=20),
    stops=st.lists(st.text(alphabet="ab\né🙂", min_size=1, max_size=3), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=12),
)
def test_token_text_property(text: str, stops: list[str], cuts: list[int]) -> None:
    data = text.encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    tokens = [(i, j) for i, j in itertools.pairwise(bounds)]
    char_starts = [len(text[:k].encode()) for k in range(len(text))]
    expected_text, expected_stop = reference(stops, text)

    stream: TokenText[int] = TokenText(stops)
    emitted, released, stopped = "", [], False
    for index, (i, j) in enumerate(tokens):
        got = stream.push(data[i:j], index)
        emitted += got.text
        released += got.items
        if got.stopped:
            stopped = True
            break
        token_ends = {k: sum(b < tokens[k][1] for b in char_starts) for k in got.items}
        assert all(end <= len(emitted) for end in token_ends.values())
    if not stopped:
        got = stream.finish()
        emitted += got.text
        released += got.items
        stopped = got.stopped

    assert (emitted, stopped) == (expected_text, expected_stop)
    if stopped:
        token_starts = [sum(b < i for b in char_starts) for i, _ in tokens]
        starts_complete = [
            s if (s == len(text) or char_starts[s] == i) else s - 1
            for s, (i, _) in zip(token_starts, tokens, strict=True)
        ]
        assert released == [k for k, s in enumerate(starts_complete) if s < len(emitted)]
    else:
        assert released == list(range(len(tokens)))
