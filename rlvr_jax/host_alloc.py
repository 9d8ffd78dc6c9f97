"""Host memory for XLA:CPU programs: keep freed buffers mapped for the next call instead of unmapping them.

XLA:CPU allocates each call's temporaries with malloc from a worker thread (2.4 GB for the SmolLM2-135M
train step of `benchmarks/iteration_bench.py`). glibc serves any block over 64 MB in a thread arena with
mmap and returns it with munmap on free, so every call page-faults its whole working set again: about
690k faults and 1 s of a 7.5 s train step on the 2-core test machine. Started with one arena, no mmap and no
trimming, glibc keeps that memory in its heap and the next call reuses it without a fault.

GLIBC_TUNABLES is read only when a process starts, so `ensure("keep")` re-executes the running command
(`sys.orig_argv`, same pid) once with the tunables added. `rlvr-train` and `rlvr-eval` call it after
parsing their config (`train.host_allocator`). The cost: the process keeps its peak host memory until it
exits, as device allocators do. No effect outside Linux/glibc. The default, `auto`, does this only when
no accelerator backend is installed (no libtpu, no CUDA/ROCm plugin, or JAX_PLATFORMS=cpu). On TPU and GPU
hosts the big buffers live in device memory, and one malloc arena would only serialise the host's
threads.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import sys

MODES = ("auto", "keep", "system")
ACCELERATOR_MODULES = ("libtpu", "jax_cuda13_plugin", "jax_cuda12_plugin", "jax_rocm7_plugin", "jax_rocm60_plugin")
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


def describe() -> str:
    """One line for the start-up log: which host allocator this process runs with."""
    if active():
        return "host memory: glibc tunables (freed buffers stay mapped)"
    return "host memory: system malloc"


def environ_with_tunables(environ=None) -> dict:
    """A copy of the environment for a child process that should start with the tunables."""
    env = dict(os.environ if environ is None else environ)
    if supported():
        env["GLIBC_TUNABLES"] = merged(env.get("GLIBC_TUNABLES", ""))
    return env


def accelerator(environ=None, find_spec=importlib.util.find_spec) -> str | None:
    """The accelerator backend JAX would start here (an installed module name, or JAX_PLATFORMS), else None.

    Checked without importing anything, so it can run before JAX starts."""
    env = os.environ if environ is None else environ
    platforms = [p.strip().lower() for p in env.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    if platforms:
        return None if platforms == ["cpu"] else ",".join(platforms)
    return next((m for m in ACCELERATOR_MODULES if find_spec(m) is not None), None)


def wanted(mode: str, environ=None, find_spec=importlib.util.find_spec) -> bool:
    """Whether `mode` asks for the tunables here: keep, or auto on a host where JAX runs on the CPU."""
    if mode not in MODES:
        raise ValueError(f"config.train.host_allocator: {mode!r} must be one of {', '.join(MODES)}")
    return mode == "keep" or (mode == "auto" and accelerator(environ, find_spec) is None)


def ensure(mode: str) -> None:
    """When `wanted(mode)` on glibc, restart this command once with the tunables (returns if already set)."""
    if not wanted(mode) or not supported() or active() or os.environ.get(_GUARD):
        return
    env = environ_with_tunables()
    env[_GUARD] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
