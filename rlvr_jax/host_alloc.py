"""Host memory for XLA:CPU programs: keep freed buffers mapped for the next call instead of unmapping them.

XLA:CPU allocates each call's temporaries with malloc from a worker thread (2.4 GB for the SmolLM2-135M
train step of `benchmarks/iteration_bench.py`). glibc serves any block over 64 MB in a thread arena with
mmap and returns it with munmap on free, so every call page-faults its whole working set again: about
690k faults and 1 s of a 7.5 s train step on the 2-core test machine. Started with one arena, no mmap and no
trimming, glibc keeps that memory in its heap and the next call reuses it without a fault.

GLIBC_TUNABLES is read only when a process starts, so `ensure("keep")` re-executes the running command
(`sys.orig_argv`, same pid) once with the tunables added. `rlvr-train` and `rlvr-eval` call it after
parsing their config (`train.host_allocator`). The cost: the process keeps its peak host memory until it
exits, as device allocators do. No effect outside Linux/glibc.
"""
from __future__ import annotations

import os
import platform
import sys

MODES = ("keep", "system")
TUNABLES = (("glibc.malloc.arena_max", "1"),  # every thread allocates from the main (brk) heap
            ("glibc.malloc.mmap_max", "0"),  # no block is served by mmap, so none is unmapped on free
            ("glibc.malloc.trim_threshold", str(1 << 40)))  # and the heap top is never given back
_GUARD = "RLVR_JAX_HOST_ALLOC_REEXEC"  # set in the re-executed process: never exec twice


def supported() -> bool:
    """True on Linux with glibc >= 2.26 (the first with malloc tunables)."""
    lib, version = platform.libc_ver()
    if not sys.platform.startswith("linux") or lib != "glibc":
        return False
    try:
        return tuple(int(p) for p in version.split(".")[:2]) >= (2, 26)
    except ValueError:
        return False


def _parse(tunables: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in tunables.split(":") if "=" in item)


def merged(tunables: str) -> str:
    """GLIBC_TUNABLES value with ours added; keys the user already set keep the user's values."""
    have = _parse(tunables)
    extra = [f"{k}={v}" for k, v in TUNABLES if k not in have]
    return ":".join([t for t in tunables.split(":") if t] + extra)


def active(environ=None) -> bool:
    """Whether the environment (default: this process's) names every tunable we set."""
    env = os.environ if environ is None else environ
    have = _parse(env.get("GLIBC_TUNABLES", ""))
    return all(k in have for k, _ in TUNABLES)


def environ_with_tunables(environ=None) -> dict:
    """A copy of the environment for a child process that should start with the tunables."""
    env = dict(os.environ if environ is None else environ)
    if supported():
        env["GLIBC_TUNABLES"] = merged(env.get("GLIBC_TUNABLES", ""))
    return env


def ensure(mode: str) -> None:
    """With mode 'keep' on glibc, restart this command once with the tunables (returns if already set)."""
    if mode not in MODES:
        raise ValueError(f"config.train.host_allocator: {mode!r} must be one of {', '.join(MODES)}")
    if mode != "keep" or not supported() or active() or os.environ.get(_GUARD):
        return
    env = environ_with_tunables()
    env[_GUARD] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
