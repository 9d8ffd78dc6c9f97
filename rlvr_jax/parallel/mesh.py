"""Device mesh from the `mesh` config group: axes (data, fsdp, tensor), -1 meaning 'the rest'."""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "tensor")


def resolve_sizes(sizes: tuple[int, int, int], n_devices: int) -> tuple[int, int, int]:
    """Fills in the one -1 and checks the product equals the device count."""
    sizes = list(sizes)
    if sizes.count(-1) > 1:
        raise ValueError("config.mesh: at most one of data/fsdp/tensor may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ValueError(f"config.mesh: sizes {tuple(sizes)} do not divide the {n_devices} devices")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ValueError(f"config.mesh: data*fsdp*tensor = {math.prod(sizes)} but there are {n_devices} devices")
    return tuple(sizes)


def make_mesh(mesh_cfg=None, *, shape: tuple[int, int, int] | None = None, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh with Auto axes (GSPMD propagation inside jit)."""
    devices = list(devices if devices is not None else jax.devices())
    if shape is None:
        shape = (-1, 1, 1) if mesh_cfg is None else (mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor)
    shape = resolve_sizes(tuple(shape), len(devices))
    if devices == list(jax.devices()):
        return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * 3)


def single_device_mesh() -> Mesh:
    return make_mesh(shape=(1, 1, 1), devices=jax.devices()[:1])


def describe(mesh: Mesh) -> str:
    """The preflight line: processes, devices, mesh shape, memory per device when known."""
    dev = mesh.devices.flat[0]
    mem = ""
    try:
        stats = dev.memory_stats() or {}
        if "bytes_limit" in stats:
            mem = f", {stats['bytes_limit'] / 2**30:.1f} GiB/device"
    except Exception:  # noqa: BLE001 - CPU devices have no memory stats
        pass
    shape = " x ".join(f"{a}={n}" for a, n in mesh.shape.items())
    return (f"process {jax.process_index()}/{jax.process_count()}, {jax.local_device_count()} local / "
            f"{jax.device_count()} global {dev.platform} devices, mesh {shape}{mem}")
