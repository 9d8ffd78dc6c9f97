"""host_alloc: tunables merge, the one-time re-exec, and what the tunables change in glibc's heap."""
import os
import subprocess
import sys
import textwrap

import pytest

from rlvr_jax import host_alloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc_only = pytest.mark.skipif(not host_alloc.supported(), reason="needs Linux with glibc >= 2.26")


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "RLVR_JAX_HOST_ALLOC_REEXEC")}
    env.update(extra)
    return env


def test_merge_keeps_the_users_values_and_adds_ours():
    got = host_alloc.merged("glibc.malloc.arena_max=4:glibc.foo=1")
    parts = got.split(":")
    assert parts[:2] == ["glibc.malloc.arena_max=4", "glibc.foo=1"]
    assert "glibc.malloc.mmap_max=0" in parts and sum(p.startswith("glibc.malloc.arena_max") for p in parts) == 1
    assert host_alloc.active({"GLIBC_TUNABLES": got})
    assert not host_alloc.active({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert host_alloc.merged("") == ":".join(f"{k}={v}" for k, v in host_alloc.TUNABLES)


def test_unknown_mode_names_the_field():
    with pytest.raises(ValueError, match="config.train.host_allocator: 'big' must be one of auto, keep, system"):
        host_alloc.ensure("big")


def test_auto_keeps_only_where_jax_runs_on_the_cpu():
    none = lambda m: None  # noqa: E731  (no plugin installed)
    cuda = lambda m: object() if m == "jax_cuda12_plugin" else None  # noqa: E731
    assert host_alloc.wanted("auto", {}, none) and host_alloc.accelerator({}, none) is None
    assert host_alloc.accelerator({}, cuda) == "jax_cuda12_plugin" and not host_alloc.wanted("auto", {}, cuda)
    assert host_alloc.wanted("auto", {"JAX_PLATFORMS": "cpu"}, cuda)  # forced onto the CPU
    assert not host_alloc.wanted("auto", {"JAX_PLATFORMS": "tpu,cpu"}, none)
    assert host_alloc.wanted("keep", {}, cuda) and not host_alloc.wanted("system", {}, none)


SCRIPT = textwrap.dedent("""
    import os, sys
    print("start", os.getpid(), flush=True)
    from rlvr_jax import host_alloc
    host_alloc.ensure(sys.argv[1])
    print("after", os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:], flush=True)
""")


@glibc_only
@pytest.mark.parametrize("mode", ["auto", "keep", "system"])
def test_ensure_restarts_the_same_command_once(tmp_path, mode):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    p = subprocess.run([sys.executable, str(script), mode, "--x=1"], env=_clean_env(JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    lines = p.stdout.splitlines()
    assert p.returncode == 0, p.stderr
    pid = lines[0].split()[1]
    after = [ln for ln in lines if ln.startswith("after")]
    assert len(after) == 1 and after[0].split()[1] == pid  # exec keeps the pid; one final run
    if mode != "system":  # auto: JAX_PLATFORMS=cpu, so JAX runs on the CPU
        assert len(lines) == 3 and lines[1] == lines[0]  # ran twice from the top, the second time with tunables
        assert "glibc.malloc.arena_max=1" in after[0] and "'--x=1'" in after[0]
    else:
        assert len(lines) == 2 and "glibc.malloc" not in after[0]


HEAP = textwrap.dedent("""
    import ctypes, ctypes.util, threading
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    class Info(ctypes.Structure):  # glibc's struct mallinfo2
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def worker():  # XLA:CPU frees its temporaries on worker threads: allocate and free 256 MB from one
        p = libc.malloc(256 << 20)
        out["mapped_while_held"] = libc.mallinfo2().hblkhd
        libc.free(p)
    out = {}
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    out["main_heap_after_free"] = libc.mallinfo2().arena
    print(out["mapped_while_held"], out["main_heap_after_free"])
""")


@glibc_only
def test_tunables_keep_a_big_thread_allocation_in_the_main_heap_after_free():
    """What the tunables change, read from glibc's own counters (deterministic: no timing, no fault counts).

    Without them a 256 MB block from a thread is mmapped in a thread arena and unmapped on free, so the
    next call faults it in again. With them it comes from the one main heap and stays there after free.
    The fault counts this saves in real XLA:CPU calls are measured by benchmarks/host_alloc_faults.py.
    """
    runs = {}
    for name, env in (("system", _clean_env()), ("keep", host_alloc.environ_with_tunables(_clean_env()))):
        p = subprocess.run([sys.executable, "-c", HEAP], env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        runs[name] = tuple(int(x) for x in p.stdout.split())
    mb = 2**20
    assert runs["keep"][1] >= 256 * mb, runs  # the freed block stays in the main heap, ready for reuse
    assert runs["system"][1] < 64 * mb, runs  # without the tunables it never reaches the main heap
