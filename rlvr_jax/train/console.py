"""Console output of a run, from process 0 only: messages (through tqdm, so progress bars stay intact),
the resolved config without the fields that do not act on this run, and shortened sample completions."""
from __future__ import annotations

import jax
from tqdm import tqdm

from rlvr_jax.active_fields import inactive_fields


def log(msg: str):
    """One console line from process 0."""
    if jax.process_index() == 0:
        tqdm.write(msg)


def print_config(cfg):
    """The resolved config, without the fields that do not act on this run (`active_fields.inactive_fields`)."""
    skip = inactive_fields(cfg)
    log(f"resolved config ({len(skip)} fields that do not act on this run left out):")
    for group, sub in cfg.items():
        shown = [f"{k}={v!r}" for k, v in sub.items() if f"{group}.{k}" not in skip]
        if shown:
            log(f"  {group}: " + ", ".join(shown))


def shorten(text: str, limit: int = 240) -> str:
    """One line: newlines shown as '⏎', the middle cut when longer than `limit`."""
    one = str(text).replace("\n", " ⏎ ")
    if len(one) <= limit:
        return one
    half = (limit - 5) // 2
    return one[:half] + " ... " + one[-half:]


def print_samples(step: int, samples: list[dict]):
    """A few sample completions with their reward and verifier status, shortened."""
    for s in samples:
        log(f"  sample @{step} [{s.get('status', '?')}, reward {s.get('reward', float('nan')):.2f}] "
            f"{shorten(s.get('prompt', ''), 120)!s}  =>  {shorten(s.get('completion', ''))}")
