"""Console entry points: rlvr-train, rlvr-eval, rlvr-compile.

Each takes `--config configs/X.py` (an ml-collections file with `get_config()`) and
`--config.group.field=value` overrides. A bad config prints one line naming the field and
exits with status 2 (no traceback).
"""
from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from rlvr_jax.config import ConfigError, apply_variant, help_text, validate


def _parse(argv, extra_flags=None):
    """Parses argv into (validated ConfigDict, FlagValues); exits 2 with one line on error."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "ml-collections config file", flag_values=fv,
                                    lock_config=True)
    for define in extra_flags or ():
        define(fv)
    prog = argv[0].rsplit("/", 1)[-1] if argv else "rlvr"
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
        print(f"usage: {prog} --config configs/X.py [--config.group.field=value ...]\n\nfields:\n{help_text()}")
        sys.exit(0)
    try:
        fv(argv)
        if fv.config is None:
            raise ConfigError("--config: required (e.g. --config configs/demo.py)")
        cfg = validate(apply_variant(fv.config))
    except ConfigError as e:
        _die(prog, str(e))
    except flags.Error as e:
        _die(prog, _one_line(e))
    except (AttributeError, KeyError, TypeError, ValueError, FileNotFoundError, SyntaxError) as e:
        _die(prog, _one_line(e))
    return cfg, fv


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    text = " ".join(m.strip() for m in msg if m.strip()) or type(e).__name__
    return text[:500]


def _die(prog: str, msg: str):
    print(f"{prog}: error: {msg}", file=sys.stderr)
    sys.exit(2)


def train_main(argv=None):
    """rlvr-train: runs the RL loop described by the config."""
    cfg, _ = _parse(argv or sys.argv)
    from rlvr_jax.train import loop
    try:
        loop.run(cfg)
    except ConfigError as e:
        _die("rlvr-train", str(e))


def eval_main(argv=None):
    """rlvr-eval: pass@k / avg@k / coverage of a checkpoint (or the initial policy) on held-out queries."""
    def ckpt(fv):
        flags.DEFINE_multi_string("checkpoint", [], "checkpoint folder(s); several give one plot", flag_values=fv)
        flags.DEFINE_string("out", "", "output folder (default: <log.dir>/eval)", flag_values=fv)
    cfg, fv = _parse(argv or sys.argv, [ckpt])
    from rlvr_jax.train import evaluate
    try:
        evaluate.run(cfg, checkpoints=fv.checkpoint, out=fv.out or None)
    except ConfigError as e:
        _die("rlvr-eval", str(e))


def compile_main(argv=None):
    """rlvr-compile: ahead-of-time compile of the train step and sampler, with a memory/FLOP report."""
    def topo(fv):
        flags.DEFINE_string("topology", "", "abstract TPU topology, e.g. v5p:4x4x4 (needs libtpu); "
                            "empty: the local devices", flag_values=fv)
        flags.DEFINE_string("out", "", "write the report as JSON here", flag_values=fv)
    cfg, fv = _parse(argv or sys.argv, [topo])
    from rlvr_jax.parallel import aot
    try:
        aot.run(cfg, topology=fv.topology or None, out=fv.out or None)
    except ConfigError as e:
        _die("rlvr-compile", str(e))
