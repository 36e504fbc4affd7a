"""Drafts from a predicted output: following, resynchronising, sizing the window."""

from __future__ import annotations

from chatd.engine.prediction import AFTER_MISS, FIRST_DRAFT, MAX_DRAFT, Draft


def follow(draft: Draft, generated: list[int], token: int) -> None:
    generated.append(token)
    draft.observe(generated)


def test_window_grows_while_drafts_are_accepted_and_shrinks_after_a_miss() -> None:
    draft = Draft(list(range(1000)))
    assert len(draft.propose(100)) == FIRST_DRAFT
    sizes = []
    for _ in range(4):
        drafted = len(draft.propose(100))
        draft.verified(drafted, drafted)
        sizes.append(len(draft.propose(100)))
    assert sizes == [16, MAX_DRAFT, MAX_DRAFT, MAX_DRAFT]
    draft.verified(MAX_DRAFT, 1)
    assert len(draft.propose(100)) == AFTER_MISS
    draft.verified(AFTER_MISS, 0)
    assert len(draft.propose(100)) == AFTER_MISS
    assert len(draft.propose(1)) == 1  # the caller's room limits the window


def test_draft_resyncs_after_an_edit_and_counts_openai_style() -> None:
    predicted = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    draft = Draft(predicted)
    out: list[int] = []
    for token in (10, 11, 12):
        follow(draft, out, token)
    assert draft.propose(3) == [13, 14, 15]
    for token in (99, 98, 15, 16):  # 13, 14 replaced by 99, 98
        follow(draft, out, token)
    assert draft.propose(5) == [17, 18, 19]
    for token in (17, 18, 19):
        follow(draft, out, token)
    assert draft.accepted == 8
    assert draft.rejected == 2
    assert draft.propose(5) == []
