"""Console entry points: rlvr-train, rlvr-eval, rlvr-compile.

Each takes `--config configs/X.py` (an ml-collections file with `get_config()`) and
`--config.group.field=value` overrides. A bad config prints one line naming the field and
exits with status 2 (no traceback).
"""
from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from rlvr_jax.active_fields import refuse_inactive
from rlvr_jax.config import ConfigError, apply_variant, help_text, validate


def _parse(argv, extra_flags=None, *, runs: bool = True):
    """Parses argv into (validated ConfigDict, FlagValues); exits 2 with one line on error.

    runs: the entry point runs the configured job (rlvr-train, rlvr-eval), so a field set to a value that has
    no effect on it is refused too (`active_fields.refuse_inactive`); rlvr-compile only plans, and passes False."""
    prog = argv[0].rsplit("/", 1)[-1] if argv else "rlvr"
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
        print(f"usage: {prog} --config configs/X.py [--config.group.field=value ...]\n\nfields:\n{help_text()}")
        sys.exit(0)
    try:
        fv = flags.FlagValues()
        # sys_argv: override flags (--config.a.b=...) are discovered from these arguments
        config_flags.DEFINE_config_file("config", None, "ml-collections config file", flag_values=fv,
                                        lock_config=True, sys_argv=list(argv))
        for define in extra_flags or ():
            define(fv)
        fv(argv)
        if fv.config is None:
            raise ConfigError("--config: required (e.g. --config configs/demo.py)")
        cfg = validate(apply_variant(fv.config))
        if runs:
            refuse_inactive(cfg)
    except ConfigError as e:
        _die(prog, str(e))
    except flags.Error as e:
        _die(prog, _one_line(e))
    except (AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError, ImportError) as e:
        _die(prog, _one_line(e))
    return cfg, fv


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    text = " ".join(m.strip() for m in msg if m.strip()) or type(e).__name__
    return text[:500]


def _die(prog: str, msg: str):
    print(f"{prog}: error: {msg}", file=sys.stderr)
    sys.exit(2)


def _host_allocator(cfg, argv, reexec):
    """Restarts the process once with the host-allocator tunables (`train.host_allocator`), before JAX starts.

    Only when the entry point runs the program itself (`reexec`; by default, when argv came from the command
    line): a caller that passes argv, such as a test, keeps its process."""
    if argv is None if reexec is None else reexec:
        from rlvr_jax import host_alloc
        host_alloc.ensure(cfg.train.host_allocator)


def train_main(argv=None, reexec=None):
    """rlvr-train: runs the RL loop described by the config."""
    cfg, _ = _parse(argv or sys.argv)
    _host_allocator(cfg, argv, reexec)
    from rlvr_jax.train import loop
    try:
        loop.run(cfg)
    except ConfigError as e:
        _die("rlvr-train", str(e))


def eval_main(argv=None, reexec=None):
    """rlvr-eval: pass@k / avg@k / coverage of a checkpoint (or the initial policy) on held-out queries."""
    def ckpt(fv):
        flags.DEFINE_multi_string("checkpoint", [], "checkpoint folder(s); several give one plot", flag_values=fv)
        flags.DEFINE_string("out", "", "output folder (default: <log.dir>/eval)", flag_values=fv)
    cfg, fv = _parse(argv or sys.argv, [ckpt])
    _host_allocator(cfg, argv, reexec)
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
        flags.DEFINE_string("layers", "", "compile at two depths, e.g. 2,4, and extrapolate to the real one "
                            "(fast on small machines; default: $RLVR_AOT_LAYERS or the full depth)", flag_values=fv)
        flags.DEFINE_bool("analytic", False, "compile nothing: exact bytes/FLOPs from shapes, closed-form "
                          "activations (default: $RLVR_AOT_MODE=analytic)", flag_values=fv)
        flags.DEFINE_string("train_from", "", "take the train step's compiled numbers from this earlier report "
                            "of the same step and slice; compile only the sampler", flag_values=fv)
    cfg, fv = _parse(argv or sys.argv, [topo], runs=False)
    from rlvr_jax.plan import aot
    try:
        layers = None
        if fv.layers:
            try:
                layers = tuple(int(x) for x in fv.layers.split(","))
            except ValueError:
                layers = ()
            if len(layers) != 2 or not 0 < layers[0] < layers[1]:
                raise ConfigError(f"--layers: {fv.layers!r} must be two increasing layer counts, e.g. 2,4")
        aot.run(cfg, topology=fv.topology or None, out=fv.out or None, layers=layers,
                analytic=True if fv.analytic else None, train_from=fv.train_from or None)
    except ConfigError as e:
        _die("rlvr-compile", str(e))


def main(argv=None):
    """`python -m rlvr_jax.cli {train,eval,compile} ...` (same as the console scripts)."""
    from_command_line = argv is None
    argv = list(argv or sys.argv)
    cmds = {"train": train_main, "eval": eval_main, "compile": compile_main}
    if len(argv) < 2 or argv[1] not in cmds:
        _die("rlvr", f"usage: python -m rlvr_jax.cli {{{','.join(cmds)}}} --config FILE [--config.x=y ...]")
    args = [f"rlvr-{argv[1]}"] + argv[2:]
    if argv[1] == "compile":
        compile_main(args)
    else:
        cmds[argv[1]](args, reexec=from_command_line)


if __name__ == "__main__":
    main()
