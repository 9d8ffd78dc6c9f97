"""Shared by the sampler tests: tiny peaky models, numpy reference rules, a chi-square check."""
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import stats

from rlvr_jax.models import create, tiny


def peaky(cfg, seed, scale=3.0):
    """A tiny model whose logits spread over several units (embeddings scaled up), so rules bite."""
    m = create(cfg, seed)
    m.embed_tokens.set_value(m.embed_tokens[...] * scale)
    return m


def tiny_cfg(**kw):
    base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2)
    return tiny("llama", **{**base, **kw})


def last_logits(model, prompt):
    """Reference next-token logits of one unpadded prompt (full forward, no cache)."""
    z, _ = model(jnp.asarray(prompt, jnp.int32)[None])
    return np.asarray(z[0, -1], np.float64)


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
    z, _ = model(jnp.asarray(seq)[None])
    P = len(prompt_real)
    return np.asarray(z[0, P - 1:P - 1 + len(response)], np.float64)


def split(model):
    return nnx.split(model)
