"""Benchmark worker: transformers' PyTorch `generate` (runs in benchmarks/.venvs/torch)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402

from sampler_worker_common import NEW_TOKENS, left_pad, prompts, serve  # noqa: E402


def main(folder, threads):
    torch.set_num_threads(threads)
    model = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    gen = transformers.GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                        eos_token_id=None, pad_token_id=0, bos_token_id=1)
    calls = [0]

    def run(batch, variant):
        ids, mask = left_pad(prompts(batch))
        calls[0] += 1
        torch.manual_seed(calls[0])
        with torch.inference_mode():
            out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                                 generation_config=gen)
        assert out.shape[1] == ids.shape[1] + NEW_TOKENS, out.shape

    serve(run, {"framework": "transformers", "transformers": transformers.__version__,
                "torch": torch.__version__, "threads": threads})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
