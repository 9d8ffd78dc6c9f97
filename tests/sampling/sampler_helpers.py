"""Shared by the sampler tests: tiny peaky models, numpy reference rules, a chi-square check."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import stats

from rlvr_jax.models import create, tiny


PROMPTS = [[7, 3, 9], [11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25, 26]]


def padded(prompts, width=None):
    """Left-padded (ids, mask) of token-id lists."""
    width = width or max(map(len, prompts))
    ids = np.zeros((len(prompts), width), np.int32)
    mask = np.zeros((len(prompts), width), bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = p, True
    return ids, mask


def peaky(cfg, seed, scale=3.0):
    """A tiny model whose logits spread over several units (embeddings scaled up), so rules bite."""
    m = create(cfg, seed)
    m.embed_tokens.set_value(m.embed_tokens[...] * scale)
    return m


def tiny_cfg(**kw):
    base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2)
    return tiny("llama", **{**base, **kw})


_FORWARDS = {}
WIDTH = 32


def full_forward(model, seq):
    """Logits [len(seq), V] of the plain full forward (no cache, no padding inside the sequence).

    The sequence is right-padded to a fixed width so one jitted program serves every call;
    causal attention makes the padding invisible to the positions that are read.
    """
    key = id(model)
    if key not in _FORWARDS:
        gd, st = nnx.split(model)
        _FORWARDS[key] = (jax.jit(lambda st, ids: nnx.merge(gd, st)(ids)[0][0]), st, model)
    fn, st, _ = _FORWARDS[key]
    seq = np.asarray(seq, np.int32)
    assert len(seq) <= WIDTH
    ids = np.zeros((1, WIDTH), np.int32)
    ids[0, :len(seq)] = seq
    return np.asarray(fn(st, jnp.asarray(ids)), np.float64)[:len(seq)]


def last_logits(model, prompt):
    """Reference next-token logits of one unpadded prompt (full forward, no cache)."""
    return full_forward(model, prompt)[-1]


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - np.max(x[np.isfinite(x)]))
    e[~np.isfinite(x)] = 0.0
    return e / e.sum()


def ref_logits(z, T=1.0, top_k=0, top_p=1.0, min_p=0.0):
    """Independent numpy version of temperature -> top-k -> top-p -> min-p (excluded: -inf)."""
    l = np.asarray(z, np.float64) / (T if T > 0 else 1.0)
    if top_k:
        kth = np.sort(l)[::-1][top_k - 1]
        l = np.where(l >= kth, l, -np.inf)
    if top_p < 1:
        p = softmax(l)
        order = np.argsort(-p, kind="stable")
        keep = np.zeros(len(l), bool)
        mass = 0.0
        for i in order:
            if mass >= top_p:
                break
            keep[i] = True
            mass += p[i]
        l = np.where(keep, l, -np.inf)
    if min_p > 0:
        p = softmax(l)
        l = np.where(p >= min_p * p.max(), l, -np.inf)
    return l


def log_softmax(l):
    l = np.asarray(l, np.float64)
    m = np.max(l[np.isfinite(l)])
    return l - (m + np.log(np.sum(np.exp(l[np.isfinite(l)] - m))))


def chi2_pvalue(counts, probs):
    """Pearson chi-square p-value; bins with expected < 5 are pooled. Zero-probability tokens must be absent."""
    counts, probs = np.asarray(counts, np.float64), np.asarray(probs, np.float64)
    assert counts[probs == 0].sum() == 0, f"drew excluded tokens {np.nonzero(counts * (probs == 0))[0]}"
    n = counts.sum()
    exp = probs * n
    big = exp >= 5
    obs = list(counts[big]) + ([counts[~big].sum()] if (~big).any() and exp[~big].sum() > 0 else [])
    ex = list(exp[big]) + ([exp[~big].sum()] if (~big).any() and exp[~big].sum() > 0 else [])
    return stats.chisquare(obs, ex).pvalue


def teacher_forced_logits(model, prompt_real, response):
    """[len(response), V] logits predicting each response token from the full unpadded sequence."""
    seq = np.concatenate([prompt_real, response]).astype(np.int32)
    P = len(prompt_real)
    return full_forward(model, seq)[P - 1:P - 1 + len(response)]


def split(model):
    return nnx.split(model)
