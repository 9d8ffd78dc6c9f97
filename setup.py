"""rlvr_jax: RL from verifiable rewards in JAX/Flax, with over-sharpening calibrations."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.2",
    "jaxlib>=0.10.2",
    "flax>=0.12,<0.13",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "chex>=0.1.90",
    "ml-collections>=1.0",
    "absl-py>=2.1",
    "numpy>=1.26",
    "transformers>=5,<6",  # tokenizers, configs and chat templates only (no torch needed)
    "tokenizers>=0.21",
    "safetensors>=0.5",
    "jinja2>=3.1",
    "grain>=0.2.10",
    "math-verify>=0.7",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "tensorboardX>=2.6",
    "gguf>=0.16",
]

EXTRAS = {
    "tpu": ["jax[tpu]>=0.10.2"],
    "data": ["datasets>=3.0", "tensorflow-datasets>=4.9", "pyarrow>=15"],
    "tasks": ["reasoning-gym>=0.1.19"],
    # torch must already be installed as exactly torch==2.13.0 (a local CPU build);
    # the Makefile installs it first so this spec never pulls a CUDA build.
    # peft: tests/models/test_lora.py loads our PEFT adapter folder with it (it needs torch, hence here)
    "ref": ["torch==2.13.0", "peft>=0.21"],
    "test": ["pytest>=8", "pytest-xdist>=3.5", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6"],
}
EXTRAS["dev"] = EXTRAS["test"] + EXTRAS["tasks"] + ["ruff"]

setup(
    name="rlvr_jax",
    version="0.1.0",
    description="Reinforcement learning from verifiable rewards in JAX/Flax, with IAC and DLC calibrations",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["rlvr_jax", "rlvr_jax.*"]),
    package_data={"rlvr_jax": ["data/assets/*", "kernels/*.cc"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "rlvr-train=rlvr_jax.cli:train_main",
            "rlvr-eval=rlvr_jax.cli:eval_main",
            "rlvr-compile=rlvr_jax.cli:compile_main",
        ]
    },
)
