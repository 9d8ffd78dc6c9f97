"""TPU chips and slices for ahead-of-time planning: HBM, peak bf16 FLOP/s, HBM bandwidth, and slice names.

`resolve_topology("v5p-32")` -> ("v5p:2x2x4", chip spec); names users rent (v5e-16, v5p-32, v6e-8;
v5p counts TensorCores, two per chip) and libtpu's own "<chip>:<AxBxC>" names are both accepted.
Numbers are Google Cloud's published per-chip figures.
"""
from __future__ import annotations

import dataclasses
import math
import re

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU chip: memory and peaks used to judge fit and the step time implied at peak."""

    name: str
    hbm_bytes: int
    peak_bf16_flops: float  # per chip
    hbm_bw_bytes_s: float  # per chip
    cores_per_chip: int  # TensorCores counted in the slice name (v4/v5p: 2)


# hbm_bytes is what the TPU compiler lets a program use ("available HBM" in libtpu 0.0.42's out-of-memory
# message for an abstract device), a little under the nominal 16 / 96 / 32 GiB: a plan at 99% of the
# nominal size is refused. v4 keeps its nominal 32 GiB (libtpu reports 15.25 GiB per abstract v4 device,
# which may be one of a chip's two cores; not planned for here).
CHIPS = {
    "v4": Chip("v4", 32 * GiB, 275e12, 1.2e12, 2),
    "v5e": Chip("v5e", int(15.75 * GiB), 197e12, 0.819e12, 1),
    "v5p": Chip("v5p", int(95.74 * GiB), 459e12, 2.765e12, 2),
    "v6e": Chip("v6e", int(31.25 * GiB), 918e12, 1.64e12, 1),
}

# libtpu device_kind -> chip name
DEVICE_KINDS = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5e": "v5e", "TPU v5": "v5p", "TPU v5p": "v5p",
                "TPU v6 lite": "v6e", "TPU v6e": "v6e"}

# Rented slice names -> libtpu topology (chips laid out as a 2D torus for v5e/v6e, 3D for v4/v5p).
SLICES = {
    "v5e-1": "v5e:1x1", "v5e-4": "v5e:2x2", "v5e-8": "v5e:2x4", "v5e-16": "v5e:4x4", "v5e-32": "v5e:4x8",
    "v5e-64": "v5e:8x8",
    "v5e-128": "v5e:8x16", "v5e-256": "v5e:16x16",
    "v5p-8": "v5p:2x2x1", "v5p-16": "v5p:2x2x2", "v5p-32": "v5p:2x2x4", "v5p-64": "v5p:2x4x4",
    "v5p-128": "v5p:4x4x4", "v5p-256": "v5p:4x4x8",
    "v6e-1": "v6e:1x1", "v6e-4": "v6e:2x2", "v6e-8": "v6e:2x4", "v6e-16": "v6e:4x4", "v6e-32": "v6e:4x8",
    "v6e-64": "v6e:8x8",
    "v6e-256": "v6e:16x16",
    "v4-8": "v4:2x2x1", "v4-16": "v4:2x2x2", "v4-32": "v4:2x2x4", "v4-64": "v4:2x4x4",
}

_LIBTPU_NAME = re.compile(r"^(v4|v5e|v5p|v6e|v5litepod|v6litepod):(\d+(?:x\d+)*)$")


def resolve_topology(name: str) -> tuple[str, Chip]:
    """(libtpu topology name, chip) for a rented slice name ('v5p-32') or a libtpu one ('v5p:2x2x4')."""
    name = name.strip()
    if name in SLICES:
        name = SLICES[name]
    m = _LIBTPU_NAME.match(name)
    if not m:
        raise ValueError(f"--topology: {name!r} is not a TPU slice; use e.g. v5e-16, v5p-32, v6e-8 "
                         f"or a libtpu name like v5p:4x4x4 (known slices: {', '.join(SLICES)})")
    chip = {"v5litepod": "v5e", "v6litepod": "v6e"}.get(m.group(1), m.group(1))
    return f"{chip}:{m.group(2)}", CHIPS[chip]


def slice_name(topology: str) -> str:
    """The rented name of a libtpu topology when there is one ('v5p:2x2x4' -> 'v5p-32')."""
    for k, v in SLICES.items():
        if v == topology:
            return k
    return topology


def num_chips(topology: str) -> int:
    """Chips in a libtpu topology name."""
    return math.prod(int(x) for x in topology.split(":")[1].split("x"))


def chip_of_device(device) -> Chip | None:
    """The Chip of a (real or compile-only) device, None for CPU/GPU."""
    kind = getattr(device, "device_kind", "")
    for k, v in DEVICE_KINDS.items():
        if kind == k:
            return CHIPS[v]
    return None


LIBTPU_PIN = "libtpu==0.0.42.*"  # the version jax[tpu]==0.10.2 pins


def find_libtpu() -> str | None:
    """Path of libtpu.so: $TPU_LIBRARY_PATH, the `libtpu` package, or `<venv>/libtpu_aot` (a `pip install
    --target` folder kept off the import path, so CPU-only runs never load libtpu)."""
    import importlib.util
    import os
    import sys
    env = os.environ.get("TPU_LIBRARY_PATH")
    if env and os.path.isfile(env):
        return env
    spec = importlib.util.find_spec("libtpu")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "libtpu.so")
        if os.path.isfile(path):
            return path
    path = os.path.join(sys.prefix, "libtpu_aot", "libtpu", "libtpu.so")
    return path if os.path.isfile(path) else None


def quiet_libtpu_env(path: str):
    """Environment for compile-only use of libtpu on a machine without TPUs: no metadata-server probe,
    no single-process lock file, and the library path."""
    import os
    os.environ["TPU_LIBRARY_PATH"] = path
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_WORKER_ID", "0")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def topology_devices(name: str):
    """(compile-only devices, libtpu topology name, chip) of an abstract TPU slice (needs libtpu, no TPU)."""
    topo, chip = resolve_topology(name)
    path = find_libtpu()
    if path is None:
        raise ValueError(f"--topology: compiling for a TPU slice needs libtpu: pip install '{LIBTPU_PIN}' "
                         f"(or pip install --target <venv>/libtpu_aot '{LIBTPU_PIN}' to keep it off CPU runs)")
    quiet_libtpu_env(path)
    from jax.experimental import topologies
    dims = [int(x) for x in topo.split(":")[1].split("x")]
    # libtpu's default host is 2x2x1 chips; a slice smaller than one host (v5e-1, v6e-1) is its own host
    kw = {"chips_per_host_bounds": (dims + [1, 1])[:3]} if math.prod(dims) < 4 else {}
    return topologies.get_topology_desc(topology_name=topo, platform="tpu", **kw).devices, topo, chip
