"""Paper reproduction, Qwen3-8B: the Qwen3-4B setup (configs/paper_qwen3_4b.py) at 8B.

    rlvr-train   --config configs/paper_qwen3_8b.py --config.algo.variant=iac_dlc \\
                 --config.model.source=hf --config.model.path=/path/to/Qwen3-8B \\
                 --config.data.path=/path/to/deepscaler.jsonl
    rlvr-compile --config configs/paper_qwen3_8b.py --topology v5p-32,v5p-64
model.source='preset' gives the shapes with random weights (enough for rlvr-compile); point model.source='hf'
and model.path at a local HF folder of Qwen/Qwen3-8B for a real run. Slices it fits on: docs/aot.md.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("paper_qwen3_4b", os.path.join(os.path.dirname(__file__),
                                                                               "paper_qwen3_4b.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    return _base.paper_config("qwen3-8b")
