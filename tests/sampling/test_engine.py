"""The continuous-batching engine against the static sampler (same keys -> the same tokens, log-probs and
masks, token for token) and against teacher forcing; its schedule (refill, streaming of finished groups,
the KV budget), the auto choice, and identical output on 1 and 8 (fake) devices."""
import jax
import numpy as np
import pytest

from rlvr_jax import parallel
from rlvr_jax.models.transformer import create, memory_config
from rlvr_jax.sampling import Sampler, SamplingConfig
from rlvr_jax.sampling.engine import ContinuousEngine, kv_bytes, slots_for_budget
from rlvr_jax.sampling.rollouts import Rollouts
from tests.sampling.sampler_helpers import log_softmax, padded, peaky, ref_logits, teacher_forced_logits, tiny_cfg

# prompts of 2..7 tokens; with G = 3 that is 15 rows
PROMPTS = [[7, 3, 9], [11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25, 26], [5, 6], [30, 31, 32, 33]]
G, N = 3, 10
FIELDS = ("prompt_tokens_BxP", "prompt_mask_BxP", "tokens_BxN", "mask_BxN", "lengths_B", "truncated_B",
          "logp_sampler_BxN", "logp_policy_BxN")


@pytest.fixture(scope="module")
def models():
    policy = peaky(tiny_cfg(), seed=1, scale=3.0)
    memory = create(memory_config(policy.cfg, width_ratio=0.5), seed=2)
    return policy, memory


def _cfg(**kw):
    base = dict(max_new_tokens=N, num_samples=G, prompt_buckets=(8, 16), stop_token_ids=(5, 17, 26, 40))  # 26: a greedy row stops at token 0
    return SamplingConfig(**{**base, **kw})


def assert_same(a, b):
    for f in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)), err_msg=f)


LIMITS = np.random.RandomState(0).randint(1, N + 1, size=len(PROMPTS) * G)


@pytest.mark.parametrize("kw,slots,chunk,with_memory,limits", [
    (dict(temperature=0.0), 4, 3, False, None),  # greedy, refills
    (dict(temperature=1.0), 4, 1, False, LIMITS),  # per-row limits, one step per dispatch
    (dict(temperature=0.7, top_k=12), 5, 4, False, LIMITS),
    (dict(temperature=1.0, dlc_mu=0.5), 4, 3, True, None),  # DLC: the memory advances in the same slots
    (dict(temperature=0.0, dlc_mu=1.0), 6, 2, True, LIMITS),
    (dict(temperature=1.0), 32, 16, False, None),  # more slots than rows
])
def test_engine_equals_static_sampler(models, kw, slots, chunk, with_memory, limits):
    policy, memory = models
    memory = memory if with_memory else None
    cfg = _cfg(**kw)
    ids, mask = padded(PROMPTS)
    key = jax.random.key(11)
    static = Sampler()(policy, ids, mask, key, cfg, memory=memory, limits_B=limits)
    eng = ContinuousEngine(slots, chunk)
    got = eng(policy, ids, mask, key, cfg, memory=memory, limits_B=limits)
    assert_same(static, got)
    lengths = np.asarray(got.lengths_B)
    assert lengths.min() < N  # stop tokens / limits really end rows early
    if limits is not None:
        assert (lengths <= limits).all() and (lengths == limits).any()
    if slots < len(PROMPTS) * G:  # refilled: fewer slots than rows, fewer steps than one row per slot
        assert eng.stats["slots"] == slots and eng.stats["decode_steps"] < len(PROMPTS) * G * N / slots


def test_engine_logprobs_equal_teacher_forcing(models):
    policy, _ = models
    cfg = _cfg(temperature=0.8, top_p=0.9)
    ids, mask = padded(PROMPTS)
    r = ContinuousEngine(4, 3)(policy, ids, mask, jax.random.key(5), cfg)
    for row in range(len(PROMPTS) * G):
        n = int(r.lengths_B[row])
        resp = np.asarray(r.tokens_BxN[row])[:n]
        z = teacher_forced_logits(policy, PROMPTS[row // G], resp)
        pol = [log_softmax(z[t])[resp[t]] for t in range(n)]
        smp = [log_softmax(ref_logits(z[t], 0.8, 0, 0.9))[resp[t]] for t in range(n)]
        np.testing.assert_allclose(np.asarray(r.logp_policy_BxN[row])[:n], pol, atol=1e-4)
        np.testing.assert_allclose(np.asarray(r.logp_sampler_BxN[row])[:n], smp, atol=1e-4)
        assert (np.asarray(r.logp_policy_BxN[row])[n:] == 0).all()


def test_finished_groups_stream_out_before_the_call_ends(models):
    policy, _ = models
    cfg = _cfg(temperature=1.0)
    ids, mask = padded(PROMPTS)
    seen = []
    eng = ContinuousEngine(3, 2)
    r = eng(policy, ids, mask, jax.random.key(2), cfg, limits_B=LIMITS,
            on_group=lambda i, t, m: seen.append((i, t.copy(), m.copy())))
    assert sorted(i for i, _, _ in seen) == list(range(len(PROMPTS)))
    for i, toks, m in seen:
        np.testing.assert_array_equal(toks * m, np.asarray(r.tokens_BxN)[i * G:(i + 1) * G] * m)
        np.testing.assert_array_equal(m, np.asarray(r.mask_BxN)[i * G:(i + 1) * G])
    done_at = eng.stats["group_finished_at_step"]
    assert done_at[0] < eng.stats["decode_steps"]  # the first group was out while others still decoded


def test_kv_budget_sets_the_slots(models):
    policy, _ = models
    C, P = 8 + N, 8
    per_slot, per_prompt = kv_bytes(policy.cfg, 1, C), kv_bytes(policy.cfg, 1, P)
    budget = 4 * per_slot + 3 * per_prompt  # 4 slots and a store of ceil(4 / 3) + 1 = 3 prompts
    assert slots_for_budget([policy.cfg], budget, C, G, P) == 4
    assert slots_for_budget([policy.cfg], budget - 1, C, G, P) == 3
    ro = Rollouts("continuous", kv_budget_mb=budget / 2 ** 20)
    ids, mask = padded(PROMPTS)
    ro(policy, ids, mask, jax.random.key(0), _cfg())
    assert ro.stats["slots"] == 4 and ro.stats["kv_bytes"] <= budget
    with pytest.raises(ValueError, match=r"^rollout\.kv_budget_mb: .* holds no slot"):
        Rollouts("continuous", kv_budget_mb=1e-6)(policy, ids, mask, jax.random.key(0), _cfg())


def test_auto_runs_the_engine_only_when_rows_exceed_slots(models):
    policy, _ = models
    ids, mask = padded(PROMPTS)
    for slots, want in ((0, "static"), (4, "continuous"), (15, "static")):
        ro = Rollouts("auto", slots=slots)
        a = ro(policy, ids, mask, jax.random.key(1), _cfg())
        assert ro.last == want, slots
        assert_same(a, Sampler()(policy, ids, mask, jax.random.key(1), _cfg()))


def test_bad_limits_are_refused(models):
    policy, _ = models
    ids, mask = padded(PROMPTS)
    with pytest.raises(ValueError, match=r"limits_B must be \[15\] ints in \[1, max_new_tokens=10\]"):
        ContinuousEngine(4)(policy, ids, mask, jax.random.key(0), _cfg(), limits_B=np.zeros(15, int))


@pytest.mark.parametrize("shape", [(8, 1, 1), pytest.param((2, 2, 2), marks=pytest.mark.slow)])
def test_engine_on_eight_devices_equals_one(models, shape):
    policy, memory = models
    cfg = _cfg(temperature=1.0, dlc_mu=0.5, matmul="xla")
    ids, mask = padded(PROMPTS)
    one = ContinuousEngine(8, 3)(policy, ids, mask, jax.random.key(4), cfg, memory=memory, limits_B=LIMITS)
    mesh = parallel.make_mesh(shape=shape)
    rules = parallel.rules_for("sample")
    sharded = ContinuousEngine(8, 3, mesh, rules)(parallel.shard_model(policy, mesh, parallel.rules_for("train")),
                                                  ids, mask, jax.random.key(4), cfg,
                                                  memory=parallel.shard_model(memory, mesh, parallel.rules_for("train")),
                                                  limits_B=LIMITS)
    for f in FIELDS:
        a, b = np.asarray(getattr(one, f)), np.asarray(getattr(sharded, f))
        if a.dtype == np.float32:
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=f)
        else:
            np.testing.assert_array_equal(a, b, err_msg=f)


def test_admit_copies_in_place_when_slots_are_sharded():
    """On 8 chips the K/V copy into slots is elementwise along the sharded slot axis: admit's temporaries stay
    within the (gathered) store's K/V, where a scatter at the admitted slots held every chip's slots (~2x the
    slot cache per chip)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from rlvr_jax.plan.engine_plan import place_state
    from rlvr_jax.sampling import engine_steps as es
    mc = tiny_cfg(hidden_size=256)
    S, Q, Pl, C = 64, 16, 128, 1152
    cfg = SamplingConfig(max_new_tokens=C - Pl, num_samples=4, prompt_buckets=(Pl,))
    mesh, rules = parallel.make_mesh(shape=(1, 8, 1)), parallel.rules_for("sample")
    slots, store = place_state(*jax.eval_shape(lambda: (es.new_slots([mc], S, C, S, cfg, jax.random.key(0)),
                                                         es.new_store([mc], Q, Pl, mc.vocab_size))), mesh, rules)
    idx = jax.ShapeDtypeStruct((S,), np.int32, sharding=NamedSharding(mesh, PartitionSpec()))
    key = jax.eval_shape(lambda: jax.random.key(0))
    mem = ContinuousEngine(S, 4, mesh, rules)._admit.lower(slots, store, idx, idx, idx, idx, key,
                                                         cfg=cfg).compile().memory_analysis()
    store_kv = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(store.caches))
    slot_kv_per_chip = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(slots.caches)) // 8
    assert store_kv < slot_kv_per_chip / 4  # the bound below is far under what a gather of the slots needs
    assert mem.temp_size_in_bytes <= 1.1 * store_kv, (mem.temp_size_in_bytes, store_kv, slot_kv_per_chip)
    assert mem.alias_size_in_bytes >= slot_kv_per_chip  # the slots are donated and updated in place


def test_prefill_is_split_over_the_chips():
    """The store prefill lays its prompts over the batch axes: per chip it does 1/8 of one chip's FLOPs on 8
    chips (unconstrained, every chip prefilled every prompt of the call)."""
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    from rlvr_jax.sampling import engine_steps as es
    policy = create(tiny_cfg(hidden_size=256), seed=0)
    Q, Pl = 16, 128
    cfg = SamplingConfig(max_new_tokens=16, num_samples=4, prompt_buckets=(Pl,), matmul="xla")
    flops = {}
    for shape in [(1, 1, 1), (1, 8, 1)]:
        mesh = parallel.make_mesh(shape=shape, devices=jax.devices()[:int(np.prod(shape))])
        rep = NamedSharding(mesh, PartitionSpec())
        model = parallel.shard_model(policy, mesh, parallel.rules_for("train"))
        args = jax.device_put((es.new_store([policy.cfg], Q, Pl, policy.cfg.vocab_size), np.ones((Q, Pl), np.int32),
                               np.ones((Q, Pl), bool), np.arange(Q, dtype=np.int32)), rep)
        compiled = ContinuousEngine(16, 4, mesh, parallel.rules_for("sample"))._prefill.lower(
            [nnx.state(model)], *args, cfg=cfg, graphdefs=(nnx.graphdef(model),)).compile()
        flops[shape] = compiled.cost_analysis()["flops"]
    assert flops[(1, 8, 1)] <= 1.05 * flops[(1, 1, 1)] / 8, flops
