"""Sampling-bias and coupling probes: closed forms on synthetic arrays, first-order Taylor on a tiny model."""
import jax
import numpy as np
import pytest
from flax import nnx

from rlvr_jax.eval import modes, probes
from rlvr_jax.models import create, tiny

V, EOS = 8, 1


@pytest.fixture(scope="module")
def setup():
    cfg = tiny("qwen3", vocab_size=V, hidden_size=32, intermediate_size=64, num_heads=4, num_kv_heads=2,
               num_layers=1)
    model = create(cfg, seed=5)
    model.embed_tokens[...] = model.embed_tokens[...] * 3.0
    prompts = np.array([[0, 2, 3, 4], [0, 0, 5, 6], [7, 6, 5, 4]], np.int32)
    pmask = prompts != 0
    pmask[2] = True
    # candidates per query: all sequences <content token> EOS (6 of them) and <content> <content> EOS (first 6)
    cands = [[t, EOS, 0] for t in (0, 2, 3, 4, 5, 6)] + [[a, b, EOS] for a, b in ((2, 2), (2, 3), (3, 4), (4, 5),
                                                                                 (5, 6), (6, 7))]
    ans = np.broadcast_to(np.array(cands, np.int32), (3, 12, 3))
    amask = np.broadcast_to(np.array([[1, 1, 0]] * 6 + [[1, 1, 1]] * 6, bool), (3, 12, 3))
    correct = np.zeros((3, 12), bool)
    correct[:, [1, 2, 7, 9, 10]] = True
    return dict(model=model, prompts=prompts, pmask=pmask, ans=ans, amask=amask, correct=correct)


def test_sampling_bias_closed_form():
    before = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]]))
    after = before + np.array([[0.5, -0.1, -0.3, 0.0], [0.2, 0.2, -0.4, 0.0]])
    correct = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    sampled = np.array([[1, 0, 0, 1], [1, 1, 0, 0]], bool)
    r = probes.sampling_bias(before, after, correct, sampled)
    assert abs(r["mean_delta_sampled_correct"] - (0.5 + 0.2 + 0.2) / 3) < 1e-12
    assert abs(r["mean_delta_unsampled_correct"] - (-0.2)) < 1e-12
    np.testing.assert_allclose(r["gap_per_query"], [0.5 - (-0.2)])  # query 1 has no unsampled correct answer
    np.testing.assert_allclose(r["unsampled_correct_mass_after"], [0.2 * np.exp(-.1) + 0.3 * np.exp(-.3), 0.0])


def test_grpo_weights():
    w = probes.grpo_weights(np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(w[0], np.array([1, -1, -1, 1]) / 4, atol=1e-5)
    assert (w[1] == 0).all()


def test_sampling_bias_probe_sampled_modes_gain(setup):
    s = setup
    r = probes.sampling_bias_probe(s["model"], s["prompts"], s["pmask"], s["ans"], s["amask"], s["correct"],
                                   group_size=8, seed=0, lr=0.05, rows_per_call=64)
    assert r["counts_BxA"].sum() == 24 and r["counts_BxA"].shape == (3, 12)
    assert np.isfinite(r["gap"])
    assert r["mean_delta_sampled_correct"] > r["mean_delta_unsampled_correct"]
    assert r["gap"] > 0
    again = modes.sequence_logprobs(  # the input model is untouched
        s["model"], s["prompts"], s["pmask"], s["ans"], s["amask"], rows_per_call=64)
    np.testing.assert_array_equal(again, r["logp_before"])


def test_coupling_probe_first_order(setup):
    """For a small SGD step, delta log p(b|B) = lr * <g_a, g_b> + O(lr^2): slope ~ lr, correlation ~ 1."""
    s = setup
    items = [(0, 1), (0, 7), (1, 2), (1, 9), (2, 10), (2, 3)]
    q = np.array([i for i, _ in items])
    a = np.array([j for _, j in items])
    lr = 1e-3
    r = probes.coupling_probe(s["model"], s["prompts"][q], s["pmask"][q], s["ans"][q, a], s["amask"][q, a],
                              lr=lr, query_id_N=q)
    assert r["pairs_NxN"].sum() == 6 * 6 - 6 - 6  # same-query pairs and i == j excluded
    assert np.abs(r["inner"]).max() > 0
    assert r["correlation"] > 0.99
    assert abs(r["slope"] / lr - 1) < 0.05
    # diagonal: the step on item i raises log p of item i by ~ lr |g_i|^2
    np.testing.assert_allclose(np.diag(r["delta_NxN"]), lr * np.diag(r["inner_NxN"]), rtol=0.05)
    # a user-supplied update callable gives the same numbers
    r2 = probes.coupling_probe(s["model"], s["prompts"][q], s["pmask"][q], s["ans"][q, a], s["amask"][q, a],
                               update=probes.sgd_update(lr), query_id_N=q)
    np.testing.assert_allclose(r2["delta_NxN"], r["delta_NxN"], rtol=1e-3, atol=1e-7)


def test_sgd_update_leaves_input_model(setup):
    s = setup
    before = nnx.state(s["model"], nnx.Param)
    flat = [np.asarray(x).copy() for x in jax.tree.leaves(before)]
    toks = np.concatenate([s["prompts"][:1], s["ans"][0, :1]], 1)
    msk = np.concatenate([s["pmask"][:1], s["amask"][0, :1]], 1)
    new = probes.sgd_update(0.1)(s["model"], {"tokens_BxT": toks, "mask_BxT": msk, "prompt_len": 4})
    after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(s["model"], nnx.Param))]
    assert all((x == y).all() for x, y in zip(flat, after))
    changed = [np.asarray(x) for x in jax.tree.leaves(nnx.state(new, nnx.Param))]
    assert any(not np.allclose(x, y) for x, y in zip(flat, changed))
