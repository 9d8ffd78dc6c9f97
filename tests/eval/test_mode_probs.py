"""Teacher-forced answer probabilities: the whole answer space sums to 1; metrics against closed forms."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax.eval import modes
from rlvr_jax.models import create, tiny

V, EOS, L = 6, 1, 3


def _sharpened(model, factor):
    m = nnx.clone(model)
    m.embed_tokens[...] = m.embed_tokens[...] * factor  # tied head: logits scale by ~factor
    return m


@pytest.fixture(scope="module")
def setup():
    cfg = tiny("llama", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=4, num_kv_heads=2)
    model = _sharpened(create(cfg, seed=3), 2.0)  # embeddings scaled up: away from uniform
    prompt = np.array([[0, 0, 2, 3, 4], [5, 2, 2, 4, 3]], np.int32)  # row 0 left-padded with 0
    pmask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
    content = [t for t in range(V) if t != EOS]
    ending, open_ = [], []  # sequences ending in EOS within L; sequences of L tokens with no EOS
    for n in range(L):
        ending += [list(s) + [EOS] for s in itertools.product(content, repeat=n)]
    open_ = [list(s) for s in itertools.product(content, repeat=L)]
    seqs = ending + open_
    ans = np.zeros((len(seqs), L), np.int32)
    amask = np.zeros((len(seqs), L), bool)
    for i, s in enumerate(seqs):
        ans[i, :len(s)], amask[i, :len(s)] = s, True
    ans_BxAxL = np.broadcast_to(ans, (2,) + ans.shape)
    amask_BxAxL = np.broadcast_to(amask, (2,) + amask.shape)
    logp = modes.sequence_logprobs(model, prompt, pmask, ans_BxAxL, amask_BxAxL)
    return dict(model=model, prompt=prompt, pmask=pmask, ans=ans_BxAxL, amask=amask_BxAxL, logp=logp,
                n_end=len(ending))


def test_whole_space_sums_to_one(setup):
    p = np.exp(setup["logp"])
    assert p.shape == (2, 31 + 125)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=2e-6)
    assert p.max() > 20 * p.min()  # far from uniform, so the check is not vacuous
    assert 0.05 < p[:, :setup["n_end"]].sum(1).min() < 0.95  # both parts carry mass


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, toks):
    return nnx.merge(graphdef, state)(toks)[0].astype(jnp.float32)


def _unpadded_reference(model, rows):
    """Per-token logprobs and entropies from one plain causal forward of the unpadded sequences.

    rows: (context tokens, answer tokens); sequences are right-padded, which causality makes harmless.
    """
    toks = np.zeros((8, 12), np.int32)  # one shape for every call: one compile
    for i, (c, a) in enumerate(rows):
        toks[i, :len(c) + len(a)] = c + a
    graphdef, state = nnx.split(model)
    logp = np.asarray(jax.nn.log_softmax(_forward(graphdef, state, jnp.asarray(toks)), -1), np.float64)
    out = []
    for i, (c, a) in enumerate(rows):
        lp = logp[i, len(c) - 1:len(c) + len(a) - 1]
        out.append((lp[np.arange(len(a)), a].sum(), -(np.exp(lp) * lp).sum(-1)))
    return out


def test_matches_unpadded_forward(setup):
    """Left padding, masks and positions change nothing: same numbers as the unpadded prompt."""
    rows, where = [], []
    for row, start in ((0, 2), (1, 0)):
        for a in (0, 7, setup["n_end"] - 1, setup["n_end"] + 60):
            seq = [int(t) for t, m in zip(setup["ans"][row, a], setup["amask"][row, a]) if m]
            rows.append(([int(t) for t in setup["prompt"][row, start:]], seq))
            where.append((row, a))
    for (row, a), (ref, _) in zip(where, _unpadded_reference(setup["model"], rows)):
        assert abs(ref - setup["logp"][row, a]) < 1e-5 * max(1.0, abs(ref)), (row, a, ref, setup["logp"][row, a])


def test_chunking_and_absent_candidates(setup):
    amask = setup["amask"].copy()
    amask[0, 5] = False  # absent candidate
    got = modes.sequence_logprobs(setup["model"], setup["prompt"], setup["pmask"], setup["ans"], amask,
                                  rows_per_call=7)
    assert got[0, 5] == -np.inf
    keep = np.ones_like(got, bool)
    keep[0, 5] = False
    np.testing.assert_allclose(got[keep], setup["logp"][keep], rtol=1e-5)
    with pytest.raises(ValueError, match="left-padded"):
        modes.sequence_logprobs(setup["model"], setup["prompt"][:, ::-1], setup["pmask"][:, ::-1],
                                setup["ans"], amask)


def test_full_space_masses(setup):
    n_end, logp = setup["n_end"], setup["logp"]
    correct = np.zeros((2, n_end), bool)
    correct[:, [0, 3, 9, 20]] = True
    met = modes.correct_mode_metrics(logp[:, :n_end], correct, full_space=True)
    outside = np.exp(logp[:, n_end:]).sum(1)  # sequences that do not end within L, scored independently
    np.testing.assert_allclose(met["mass_outside"], outside, atol=2e-6)
    np.testing.assert_allclose(met["mass_correct"] + met["mass_wrong_in_space"] + outside, 1.0, atol=2e-6)
    np.testing.assert_allclose(met["mass_correct"], np.exp(logp[:, [0, 3, 9, 20]]).sum(1), rtol=1e-12)


def test_oversharpening_index_zero_for_same_policy_positive_when_sharpened(setup):
    n_end = setup["n_end"]
    correct = np.zeros((2, n_end), bool)
    correct[:, [0, 3, 9, 20, 25]] = True
    args = (setup["prompt"], setup["pmask"], setup["ans"][:, :n_end], setup["amask"][:, :n_end])
    same = modes.measure_modes(setup["model"], *args, correct, ref_model=setup["model"], rows_per_call=256)
    for k in ("kl_policy_ref", "kl_ref_policy", "tv"):
        np.testing.assert_allclose(same["per_query"][k], 0.0, atol=1e-12)
    sharp = modes.measure_modes(_sharpened(setup["model"], 2.0), *args, correct, ref_logp_BxA=same["logp"],
                                rows_per_call=256)
    pq = sharp["per_query"]
    assert (pq["tv"] > 1e-3).all() and (pq["kl_policy_ref"] > 1e-4).all() and (pq["kl_ref_policy"] > 1e-4).all()
    assert (pq["entropy_norm"] < same["per_query"]["entropy_norm"]).all()  # sharper over correct answers
    assert sharp["summary"]["tv"]["lo"] <= sharp["summary"]["tv"]["mean"] <= sharp["summary"]["tv"]["hi"]


def test_metrics_closed_form():
    ref = np.log(np.array([[0.4, 0.1, 0.2, 0.3]]))
    correct = np.array([[True, True, False, True]])
    # a policy that multiplies every correct answer by the same factor keeps the ideal ratios: index 0
    pol = np.log(np.array([[0.4, 0.1, 0.2, 0.3]]) * np.array([[1.25, 1.25, 0.0 + 1e-12, 1.25]]))
    m = modes.correct_mode_metrics(pol, correct, ref)
    assert abs(m["tv"][0]) < 1e-9 and abs(m["kl_ref_policy"][0]) < 1e-9
    assert abs(m["mass_correct"][0] - 1.0) < 1e-9
    # collapse onto answer 0: q = (1, 0, 0) vs r = (.5, .125, .375)
    with np.errstate(divide="ignore"):
        pol2 = np.log(np.array([[0.9, 0.0, 0.1, 0.0]]))
    m2 = modes.correct_mode_metrics(pol2, correct, ref, threshold=0.05)
    assert abs(m2["tv"][0] - 0.5) < 1e-12
    assert abs(m2["kl_policy_ref"][0] - np.log(2)) < 1e-12
    assert m2["kl_ref_policy"][0] == np.inf
    assert m2["coverage_abs"][0] == 1 and m2["coverage_rel"][0] == 1 and m2["entropy_norm"][0] == 0
    assert abs(m2["mass_wrong"][0] - 0.1) < 1e-12
    u = modes.correct_mode_metrics(np.log(np.full((1, 4), 0.25)), correct)
    assert abs(u["entropy_norm"][0] - 1.0) < 1e-12 and u["coverage_rel"][0] == 3


def test_token_entropy_matches_manual(setup):
    resp = setup["ans"][:, [3, 40]]
    rmask = setup["amask"][:, [3, 40]]
    got = modes.token_entropy(setup["model"], setup["prompt"], setup["pmask"], resp, rmask, rows_per_call=256)
    rows = [([int(t) for t in setup["prompt"][1]], [int(t) for t, m in zip(resp[1, j], rmask[1, j]) if m])
            for j in (0, 1)]
    ents = np.concatenate([e for _, e in _unpadded_reference(setup["model"], rows)])
    assert abs(got[1] - ents.mean()) < 1e-5
