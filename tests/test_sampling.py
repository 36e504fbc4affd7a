"""The NumPy sampler: every parameter on synthetic logits (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.backend import SamplingParams
from chatd.engine.sampling import (
    LOGPROB_FLOOR,
    LogprobInfo,
    Sampler,
    derive_seed,
    sample_greedy_batch,
)

VOCAB = 49152


def make_logits(n: int = VOCAB, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


def sampler(n: int = VOCAB, top_logprobs: int | None = None, seed: int = 1, **kw) -> Sampler:
    return Sampler(SamplingParams(**kw), n, top_logprobs=top_logprobs, seed=seed)


def draws(s: Sampler, logits: np.ndarray, count: int, mask: np.ndarray | None = None):
    return np.array([s.sample(logits, mask)[0] for _ in range(count)])


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# --- greedy -------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{"temperature": 0.0}, {"top_k": 1}, {"top_p": 0.0}])
def test_greedy_is_argmax(params: dict) -> None:
    s = sampler(**params)
    for seed in range(5):
        logits = make_logits(seed=seed)
        assert s.sample(logits)[0] == int(np.argmax(logits))


def test_greedy_ties_go_to_the_lowest_id() -> None:
    logits = np.zeros(10, np.float32)
    logits[[3, 7]] = 1.0
    assert sampler(10, temperature=0.0).sample(logits)[0] == 3
    assert sampler(10, temperature=0.0, top_logprobs=5).sample(logits)[0] == 3


def test_greedy_batch_matches_rows() -> None:
    batch = np.stack([make_logits(seed=i) for i in range(4)])
    assert sample_greedy_batch(batch).tolist() == [int(np.argmax(row)) for row in batch]


def test_logits_are_never_modified() -> None:
    logits = make_logits()
    before = logits.copy()
    mask = np.ones(VOCAB, bool)
    mask[::3] = False
    for kw in (
        {"temperature": 0.0, "logit_bias": {5: 10.0}, "presence_penalty": 1.0},
        {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "logit_bias": {1: -5.0}},
        {"temperature": 1.3, "frequency_penalty": 0.5, "repetition_penalty": 1.2},
    ):
        s = sampler(top_logprobs=5, **kw)
        for _ in range(3):
            s.sample(logits, mask)
            s.sample(logits)
    np.testing.assert_array_equal(logits, before)


# --- logit_bias and mask ------------------------------------------------------------------


def test_bias_minus_100_bans_the_argmax() -> None:
    logits = make_logits()
    top = int(np.argmax(logits))
    second = int(np.argsort(logits)[-2])
    assert sampler(temperature=0.0, logit_bias={top: -100.0}).sample(logits)[0] == second
    assert top not in draws(sampler(logit_bias={top: -100.0}), logits, 200)


def test_bias_plus_100_forces_a_token() -> None:
    logits = make_logits()
    target = int(np.argmin(logits))
    assert set(draws(sampler(temperature=2.0, logit_bias={target: 100.0}), logits, 200)) == {target}
    assert sampler(temperature=0.0, logit_bias={target: 100.0}).sample(logits)[0] == target


def test_mask_beats_plus_100_bias() -> None:
    logits = make_logits()
    target = 42
    mask = np.zeros(VOCAB, bool)
    mask[[7, 99, 1000, 40000]] = True
    for kw in ({"temperature": 0.0}, {"temperature": 1.5}, {"top_k": 50}, {"top_p": 0.5}):
        s = sampler(logit_bias={target: 100.0}, **kw)
        assert set(draws(s, logits, 50, mask)) <= {7, 99, 1000, 40000}


@pytest.mark.parametrize("kw", [{"temperature": 0.0}, {"temperature": 1.0}, {"top_k": 20}])
def test_dense_mask_beats_plus_100_bias(kw: dict) -> None:
    logits = make_logits()
    mask = np.ones(VOCAB, bool)
    mask[42] = False
    s = sampler(logit_bias={42: 100.0, 43: 100.0}, **kw)
    assert set(draws(s, logits, 30, mask).tolist()) == {43}


def test_plain_greedy() -> None:
    assert sampler(temperature=0.0).plain_greedy
    assert not sampler(temperature=0.0, top_logprobs=0).plain_greedy
    assert not sampler(temperature=0.0, logit_bias={1: 1.0}).plain_greedy
    assert not sampler(temperature=0.0, presence_penalty=0.1).plain_greedy
    assert not sampler().plain_greedy


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_banned_tokens_are_never_sampled(temperature: float) -> None:
    logits = make_logits()
    top = int(np.argmax(logits))
    banned = [top, 7]
    s = Sampler(
        SamplingParams(temperature=temperature), VOCAB, top_logprobs=None, seed=3, banned=banned
    )
    assert s.is_banned(top) and not s.is_banned(top + 1)
    assert s.plain_greedy == (temperature == 0.0)  # the caller re-samples a banned argmax
    picks = draws(s, logits, 50)
    assert not set(picks.tolist()) & set(banned)
    if temperature == 0.0:
        rest = logits.copy()
        rest[banned] = -np.inf
        assert set(picks.tolist()) == {int(np.argmax(rest))}


def test_dense_mask_is_respected_when_sampling() -> None:
    logits = make_logits(scale=0.5)
    mask = np.random.default_rng(3).random(VOCAB) < 0.5
    got = draws(sampler(temperature=1.0), logits, 300, mask)
    assert mask[got].all()
    assert len(set(got.tolist())) > 250  # still spread over the allowed tokens


def test_mask_longer_than_the_vocabulary_is_cut() -> None:
    logits = make_logits(100)
    mask = np.zeros(128, bool)
    mask[10] = True
    assert sampler(100).sample(logits, mask)[0] == 10
    with pytest.raises(ValueError, match="entries"):
        sampler(100).sample(logits, mask[:99])


@pytest.mark.parametrize("kw", [{"temperature": 0.0}, {}, {"top_k": 5}])
def test_mask_allowing_nothing_raises(kw: dict) -> None:
    with pytest.raises(ValueError, match="mask"):
        sampler(**kw).sample(make_logits(), np.zeros(VOCAB, bool))


def test_bias_outside_the_vocabulary_is_rejected() -> None:
    with pytest.raises(ValueError, match="logit_bias"):
        sampler(100, logit_bias={100: 1.0})


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": -0.1},
        {"top_p": 1.5},
        {"top_k": -1},
        {"min_p": 2.0},
        {"repetition_penalty": 0.0},
    ],
)
def test_invalid_params_are_rejected(kw: dict) -> None:
    with pytest.raises(ValueError):
        sampler(**kw)


# --- seeds ----------------------------------------------------------------------------------


def test_same_seed_same_tokens_and_different_seeds_differ() -> None:
    steps = [make_logits(seed=i, scale=1.0) for i in range(40)]

    def run(seed: int) -> list[int]:
        s = sampler(seed=seed, temperature=1.0, top_p=0.95, presence_penalty=0.3)
        return [s.sample(logits)[0] for logits in steps]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_derive_seed() -> None:
    assert derive_seed(1234, 0) == 1234
    seeds = [derive_seed(1234, i) for i in range(8)]
    assert len(set(seeds)) == 8
    assert seeds == [derive_seed(1234, i) for i in range(8)]
    assert derive_seed(-5, 0) == 2**64 - 5
    assert derive_seed(None, 0) != derive_seed(None, 0)
    assert all(0 <= derive_seed(None, i) < 2**64 for i in range(3))


# --- temperature and truncation -------------------------------------------------------------


def test_temperature_distribution_small_vocab() -> None:
    logits = np.array([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0], np.float32)
    temperature = 0.7
    counts = np.bincount(draws(sampler(8, temperature=temperature), logits, 20000), minlength=8)
    probs = np.exp(log_softmax64(logits / temperature))
    assert chi_square(counts, probs) < 24.3  # df=7, p=0.001


def test_distribution_across_draw_blocks() -> None:
    # mass on tokens at block edges and in the zero-padded last block (vocabulary 1000)
    logits = np.full(1000, -40.0, np.float32)
    hot = [0, 255, 256, 511, 700, 999]
    logits[hot] = [0.0, 0.5, 1.0, -0.5, 0.2, 0.8]
    got = draws(sampler(1000, temperature=1.0), logits, 12000)
    assert set(got.tolist()) <= set(hot)
    counts = np.array([(got == t).sum() for t in hot])
    probs = np.exp(log_softmax64(logits[hot]))
    assert chi_square(counts, probs) < 20.5  # df=5, p=0.001


def test_high_temperature_flattens() -> None:
    logits = np.array([3.0, 0.0], np.float32)
    hot = (draws(sampler(2, temperature=0.2), logits, 500) == 0).mean()
    flat = (draws(sampler(2, temperature=2.0), logits, 500) == 0).mean()
    assert hot > 0.99 and 0.7 < flat < 0.9


def test_top_k_restricts_support() -> None:
    logits = make_logits(scale=0.3)
    top3 = set(np.argsort(logits)[-3:].tolist())
    got = set(draws(sampler(top_k=3), logits, 300).tolist())
    assert got == top3


def test_top_p_restricts_support() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    assert set(draws(sampler(4, top_p=0.75), logits, 400).tolist()) == {0, 1}
    assert set(draws(sampler(4, top_p=0.85), logits, 400).tolist()) == {0, 1, 2}
    assert set(draws(sampler(4, top_p=0.3), logits, 50).tolist()) == {0}


def test_top_p_over_a_wide_nucleus() -> None:
    # a nucleus of hundreds of tokens forces the candidate search to widen
    logits = np.full(VOCAB, -60.0, np.float32)
    order = np.random.default_rng(5).permutation(VOCAB)[:2000]
    logits[order] = -np.arange(2000, dtype=np.float32) * 1e-3
    probs = np.exp(log_softmax64(logits[order]))
    cut = int(np.searchsorted(np.cumsum(probs), 0.5)) + 1
    got = draws(sampler(top_p=0.5), logits, 1000)
    assert set(got.tolist()) <= set(order[: cut + 1].tolist())
    assert len(set(got.tolist())) > 300


def test_min_p_restricts_support() -> None:
    logits = np.log(np.array([1.0, 0.5, 0.09, 0.01], np.float32))
    assert set(draws(sampler(4, min_p=0.1), logits, 300).tolist()) == {0, 1}
    assert set(draws(sampler(4, min_p=0.6), logits, 50).tolist()) == {0}


def test_min_p_with_top_p_keeps_the_smaller_set() -> None:
    logits = np.full(VOCAB, -30.0, np.float32)
    logits[:5] = np.log([0.4, 0.3, 0.2, 0.06, 0.04])
    got = set(draws(sampler(top_p=0.95, min_p=0.4), logits, 300).tolist())
    assert got == {0, 1, 2}
    got = set(draws(sampler(top_p=0.6, min_p=0.01), logits, 300).tolist())
    assert got == {0, 1}


def test_chain_with_everything() -> None:
    logits = make_logits()
    mask = np.ones(VOCAB, bool)
    mask[np.argsort(logits)[-2:]] = False
    top40 = set(np.argsort(np.where(mask, logits, -np.inf))[-40:].tolist())
    s = sampler(temperature=0.9, top_k=40, top_p=0.9, min_p=0.02, frequency_penalty=0.1)
    assert set(draws(s, logits, 200, mask).tolist()) <= top40


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 1.7]),
    top_k=st.sampled_from([0, 1, 5, 300]),
    top_p=st.sampled_from([1.0, 0.9, 0.3]),
    min_p=st.sampled_from([0.0, 0.05]),
    density=st.sampled_from([0.001, 0.08, 0.3, 1.0]),
)
def test_chosen_token_always_allowed(
    seed: int, temperature: float, top_k: int, top_p: float, min_p: float, density: float
) -> None:
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(4096) * 4).astype(np.float32)
    mask = rng.random(4096) < density
    mask[rng.integers(4096)] = True
    s = sampler(4096, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    for _ in range(5):
        token, _ = s.sample(logits, mask)
        assert mask[token]
        if top_k:
            allowed = np.where(mask, logits, -np.inf)
            assert allowed[token] >= np.sort(allowed)[-top_k]


# --- penalties ------------------------------------------------------------------------------


def test_presence_penalty_lowers_a_repeated_token() -> None:
    logits = np.array([1.0, 0.5, 0.0], np.float32)
    s = sampler(3, temperature=0.0, presence_penalty=0.6)
    # 0: 1.0 -> 0.4 and stays there (presence does not grow); 1: 0.5 -> -0.1
    assert [s.sample(logits)[0] for _ in range(4)] == [0, 1, 0, 0]


def test_frequency_penalty_grows_with_the_count() -> None:
    logits = np.array([2.5, 1.0, 0.0], np.float32)
    s = sampler(3, temperature=0.0, frequency_penalty=1.0)
    # 0: 2.5 -> 1.5 -> 0.5 ; 1: 1.0 -> 0.0
    assert [s.sample(logits)[0] for _ in range(4)] == [0, 0, 1, 0]


def test_repetition_penalty_divides_positive_and_multiplies_negative() -> None:
    s = sampler(2, temperature=0.0, repetition_penalty=1.5)
    positive = np.array([2.0, 1.5], np.float32)
    assert [s.sample(positive)[0] for _ in range(2)] == [0, 1]  # 2.0 / 1.5 < 1.5
    s = sampler(2, temperature=0.0, repetition_penalty=1.5)
    negative = np.array([-1.0, -1.2], np.float32)
    assert [s.sample(negative)[0] for _ in range(2)] == [0, 1]  # -1.0 * 1.5 < -1.2


def test_accept_counts_tokens_the_sampler_did_not_pick() -> None:
    logits = np.array([1.0, 0.5], np.float32)
    s = sampler(2, temperature=0.0, presence_penalty=1.0)
    s.accept(0)
    assert s.sample(logits)[0] == 1


def test_penalties_lower_the_sampled_frequency() -> None:
    logits = np.zeros(20, np.float32)
    plain = draws(sampler(20, seed=3), logits, 400)
    penalised = draws(sampler(20, seed=3, frequency_penalty=2.0), logits, 400)
    assert np.bincount(penalised, minlength=20).std() < np.bincount(plain, minlength=20).std()


def test_many_distinct_tokens_grow_the_penalty_table() -> None:
    n = 500
    s = sampler(n, temperature=0.0, presence_penalty=10.0)
    logits = np.linspace(1.0, 0.0, n, dtype=np.float32)
    assert [s.sample(logits)[0] for _ in range(n)] == list(range(n))


# --- logprobs -------------------------------------------------------------------------------


def test_no_logprobs_unless_asked() -> None:
    assert sampler().sample(make_logits())[1] is None


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": 0.0},
        {"temperature": 1.3, "top_k": 10, "logit_bias": {3: 50.0}, "presence_penalty": 1.0},
        {"temperature": 0.5, "top_p": 0.9, "repetition_penalty": 1.3},
    ],
)
def test_logprobs_are_the_models_log_softmax(kw: dict) -> None:
    s = sampler(top_logprobs=20, **kw)
    for step in range(3):
        logits = make_logits(seed=step, scale=4.0)
        reference = log_softmax64(logits)
        token, info = s.sample(logits)
        assert isinstance(info, LogprobInfo)
        assert info.token_id == token
        assert info.logprob == pytest.approx(reference[token], abs=1e-4)
        ids = [i for i, _ in info.top]
        values = [v for _, v in info.top]
        assert ids == np.argsort(-reference, kind="stable")[:20].tolist()
        assert values == sorted(values, reverse=True)
        np.testing.assert_allclose(values, reference[ids], atol=1e-4)
        assert int(np.argmax(logits)) == ids[0]
        assert all(v <= 0 for v in values) and info.logprob <= 0


def test_top_logprobs_zero_gives_only_the_chosen_token() -> None:
    token, info = sampler(top_logprobs=0, temperature=0.0).sample(make_logits())
    assert info is not None and info.top == [] and info.token_id == token


def test_logprobs_floor_for_impossible_tokens() -> None:
    logits = np.zeros(50, np.float32)
    logits[0] = 1e4
    logits[1] = -np.inf
    s = sampler(50, top_logprobs=50, temperature=0.0)
    token, info = s.sample(logits)
    assert info is not None and token == 0
    assert info.logprob == 0.0
    values = dict(info.top)
    assert values[1] == LOGPROB_FLOOR
    assert all(LOGPROB_FLOOR <= v <= 0 and math.isfinite(v) for v in values.values())


def test_logprob_of_a_forced_unlikely_token() -> None:
    logits = make_logits(scale=5.0)
    target = int(np.argmin(logits))
    _, info = sampler(top_logprobs=3, logit_bias={target: 100.0}).sample(logits)
    assert info is not None and info.token_id == target
    assert info.logprob == pytest.approx(log_softmax64(logits)[target], abs=1e-3)
    assert target not in [i for i, _ in info.top]
