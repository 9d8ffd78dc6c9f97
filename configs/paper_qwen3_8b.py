"""Paper reproduction, Qwen3-8B: the Qwen3-4B setup (configs/paper_qwen3_4b.py) at 8B.

    rlvr-train   --config configs/paper_qwen3_8b.py --config.algo.variant=iac_dlc \\
                 --config.model.source=hf --config.model.path=/path/to/Qwen3-8B \\
                 --config.data.path=/path/to/deepscaler.jsonl
    rlvr-compile --config configs/paper_qwen3_8b.py --topology v5p-32,v5p-64
model.source='preset' gives the shapes with random weights (enough for rlvr-compile); point model.source='hf'
and model.path at a local HF folder of Qwen/Qwen3-8B for a real run. Slices it fits on: docs/aot.md.
"""
from rlvr_jax.config import config_module


def get_config():
    return config_module(__file__, "paper_qwen3_4b.py").paper_config("qwen3-8b")
