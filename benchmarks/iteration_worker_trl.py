"""Iteration-benchmark worker: TRL's `GRPOTrainer` (runs in benchmarks/.venvs/trl).

Matched to the others: G completions for each of the setting's prompts in one device step (matched: 64
new tokens forced with min_new_tokens, EOS suppressed; real: up to 160, ended by the tokenizer's EOS, the
chat-formatted prompt strings given as text), beta = 0 (no reference model), one optimiser step per
generation (num_iterations = 1, steps_per_generation = 1), transformers generate (no vLLM), CPU, float32,
prompts in the benchmark's order (no shuffling), scored by `iteration_common.score`. A callback times each
step from its request to on_step_end.
    python benchmarks/iteration_worker_trl.py WEIGHTS_FOLDER THREADS OUTPUT_DIR [SETTING_JSON]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import iteration_common as C  # noqa: E402


def main(folder, threads, out_dir, setting_path=None):
    import datasets
    import torch
    import transformers
    import trl
    torch.set_num_threads(threads)
    setting = C.load_setting(setting_path)
    gate = C.Gate()
    steps = 200  # upper bound; the run ends when the coordinator closes stdin

    rows = [{"prompt": r["prompt"], "answer": r["answer"]} for s in range(steps) for r in C.step_rows(s, setting)]
    ds = datasets.Dataset.from_list(rows)

    def correctness(prompts, completions, answer, **kw):
        return [C.score(setting, c, a) for c, a in zip(completions, answer)]

    n_new = setting["new_tokens"]
    args = trl.GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=setting["G"] * setting["prompts_per_step"],
        num_generations=setting["G"], max_completion_length=n_new,
        generation_kwargs=None if setting["stop_at_eos"] else {"min_new_tokens": n_new},
        temperature=setting["temperature"], top_p=1.0, top_k=0, beta=0.0, num_iterations=1, steps_per_generation=1,
        gradient_accumulation_steps=1, learning_rate=setting["learning_rate"], max_grad_norm=setting["grad_clip"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_steps=steps, shuffle_dataset=False,
        use_vllm=False, use_cpu=True, bf16=False, fp16=False, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=0, log_completions=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
    sizes = []

    class Timer(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            gate.ready(framework="trl", trl=trl.__version__, transformers=transformers.__version__,
                       torch=torch.__version__, threads=threads, setting=setting["name"])
            if gate.wait() is None:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                got = {k: logs[k] for k in ("completions/mean_length", "rewards/correctness/mean", "loss")
                       if k in logs}
                if "completions/mean_length" in got:  # the same fields as rlvr_jax's report
                    got["completion_tokens"] = int(round(got["completions/mean_length"] * args.per_device_train_batch_size))
                    got["reward_mean"] = got.get("rewards/correctness/mean")
                sizes.append(got)

        def on_step_end(self, args, state, control, **kw):
            gate.extra = sizes[-1] if sizes else {}
            gate.done()
            if gate.wait() is None:
                control.should_training_stop = True

    trainer = trl.GRPOTrainer(model=model, reward_funcs=correctness, args=args, train_dataset=ds,
                              processing_class=tok, callbacks=[Timer()])
    trainer.train()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
