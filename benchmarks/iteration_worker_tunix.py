"""Iteration-benchmark worker: tunix's GRPO learner (`tunix.rl.grpo.grpo_learner`) with its vanilla
rollout (tunix's own sampler); runs in benchmarks/.venvs/tunix.

Matched to the others: G = 8, 2 prompts per step (one mini-batch, one optimiser step), 64 new tokens
(the rollout's EOS list holds an id outside the vocabulary, so nothing stops early), beta = 0 (no reference
model), num_iterations = 1, float32, one CPU device. The learner owns its loop and pulls one batch per
step from our iterator; the iterator blocks on the coordinator, so a step is timed from its request
until the learner asks for the next batch (after the update and the actor's parameters are ready).
    python benchmarks/iteration_worker_tunix.py WEIGHTS_FOLDER
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import iteration_common as C  # noqa: E402


def main(folder, setting_path=None):
    if C.load_setting(setting_path)["name"] != "matched":
        sys.exit("iteration_worker_tunix.py: only the matched setting is wired for tunix (its vanilla rollout "
                 "is run with an EOS it never samples); run the real setting with --peers trl")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import transformers
    from flax import nnx
    from tunix.models.llama3 import model as tmodel
    from tunix.models.llama3 import params as tparams
    from tunix.rl import rl_cluster as rlc
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout

    with open(os.path.join(folder, "config.json")) as f:
        S = json.load(f)
    rope = S.get("rope_parameters") or {}
    cfg = tmodel.ModelConfig(num_layers=S["num_hidden_layers"], vocab_size=S["vocab_size"],
                             embed_dim=S["hidden_size"], hidden_dim=S["intermediate_size"],
                             num_heads=S["num_attention_heads"], head_dim=S["head_dim"],
                             num_kv_heads=S["num_key_value_heads"],
                             rope_theta=int(rope.get("rope_theta", S.get("rope_theta", 10000.0))),
                             norm_eps=S["rms_norm_eps"], weight_tying=S["tie_word_embeddings"])
    mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    model = tparams.create_model_from_safe_tensors(folder, cfg, mesh=mesh, dtype=jnp.float32)
    tok = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    never = S["vocab_size"] + 7  # an EOS id that is never sampled: all completions are NEW_TOKENS long
    rollout_cfg = base_rollout.RolloutConfig(
        max_tokens_to_generate=C.NEW_TOKENS, max_prompt_length=C.MAX_PROMPT_TOKENS,
        kv_cache_size=C.MAX_PROMPT_TOKENS + C.NEW_TOKENS + 8, temperature=C.TEMPERATURE, top_p=1.0, top_k=None,
        eos_tokens=[never])
    optimizer = optax.chain(optax.clip_by_global_norm(C.GRAD_CLIP),
                            optax.adamw(C.LEARNING_RATE, b1=0.9, b2=0.999, weight_decay=0.0))
    training = rlc.RLTrainingConfig(actor_optimizer=optimizer, eval_every_n_steps=10 ** 9, max_steps=10 ** 6,
                                    mini_batch_size=C.PROMPTS_PER_STEP, train_micro_batch_size=C.PROMPTS_PER_STEP)
    cluster_cfg = rlc.ClusterConfig(role_to_mesh={rlc.Role.ACTOR: mesh, rlc.Role.REFERENCE: mesh,
                                                  rlc.Role.ROLLOUT: mesh},
                                    rollout_engine="vanilla", offload_to_cpu=False, training_config=training,
                                    rollout_config=rollout_cfg)
    cluster = rlc.RLCluster(actor=model, reference=None, tokenizer=tok, cluster_config=cluster_cfg)
    algo = grpo_learner.GRPOConfig(num_generations=C.G, num_iterations=1, beta=0.0, epsilon=0.2,
                                   loss_agg_mode="sequence-mean-token-mean")
    gate = C.Gate()
    generate = cluster.generate

    def generate_and_count(*a, **kw):  # records completion lengths (must all be NEW_TOKENS)
        out = generate(*a, **kw)
        n = [len(t) for t in out.tokens]
        gate.extra.update(completion_tokens=int(sum(n)), rows=len(n), min_len=min(n))
        return out
    cluster.generate = generate_and_count

    def correctness(prompts, completions, answer, **kw):
        if len(answer) != len(completions):
            answer = [a for a in answer for _ in range(len(completions) // len(answer))]
        gate.extra["reward_mean"] = sum(C.reward(c, a) for c, a in zip(completions, answer)) / len(completions)
        return [C.reward(c, a) for c, a in zip(completions, answer)]

    learner = grpo_learner.GRPOLearner(rl_cluster=cluster, algo_config=algo, reward_fns=[correctness])

    def batches():
        import tunix
        gate.ready(framework="tunix", tunix=getattr(tunix, "__version__", "?"), jax=jax.__version__,
                   devices=str(jax.devices()))
        while True:
            if gate.step is not None:  # the previous step's update has been dispatched: wait for it, report
                jax.block_until_ready(nnx.state(cluster.actor_trainer.model))
                gate.done()
            step = gate.wait()
            if step is None:
                return
            rows = C.step_rows(step)
            # numpy leaves: tunix repeats each leaf G times with jax.tree.map (a list would be a pytree node)
            yield {"prompts": np.array([r["prompt"] for r in rows]), "answer": np.array([r["answer"] for r in rows])}

    learner.train(batches())


if __name__ == "__main__":
    main(*sys.argv[1:3])
