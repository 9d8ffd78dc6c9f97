"""The DLC memory's replay (`memory.window` = W > 1): a ring buffer of the previous W - 1 steps' batches.

It lives in the TrainState (`state.replay`), so it is checkpointed with everything else and resume stays
exact; the train step reads it for the memory loss and writes the step's batch into it (pure, no host
state). Slots not yet written have valid_B False, so they select no tokens. Prompts are stored left-padded
to the replay's prompt width (the token task's prompt length, or the largest prompt bucket of a text run)
and responses right-padded to its response width, so batches of any narrower shape fit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

REPLAY_KEYS = ("prompt_BxP", "prompt_mask_BxP", "response_BxN", "mask_BxN", "success_B", "valid_B")
_DTYPES = dict(prompt_BxP=jnp.int32, prompt_mask_BxP=jnp.bool_, response_BxN=jnp.int32, mask_BxN=jnp.bool_,
               success_B=jnp.bool_, valid_B=jnp.bool_)


def replay_spec(window: int, rows: int, prompt_len: int, response_len: int) -> dict | None:
    """ShapeDtypeStructs of the replay ([W - 1, rows, ...] per batch key, plus the next slot), or None for W = 1."""
    if window <= 1:
        return None
    width = dict(BxP=prompt_len, BxN=response_len)
    spec = {k: jax.ShapeDtypeStruct((window - 1, rows) + ((width[k[-3:]],) if k[-3:] in width else ()), _DTYPES[k])
            for k in REPLAY_KEYS}
    spec["next"] = jax.ShapeDtypeStruct((), jnp.int32)
    return spec


def empty_replay(spec: dict | None) -> dict | None:
    """A replay with every slot unfilled (zeros: valid_B False)."""
    return None if spec is None else {k: jnp.zeros(s.shape, s.dtype) for k, s in spec.items()}


def _fit(x, width: int, left: bool, name: str):
    """x [B, n] padded to [B, width] on the left (prompts) or the right (responses)."""
    n = x.shape[1]
    if n > width:
        raise ValueError(f"config.memory.window: a batch {name} of width {n} exceeds the replay's {width}")
    return jnp.pad(x, ((0, 0), (width - n, 0) if left else (0, width - n)))


def push(replay: dict, batch: dict) -> dict:
    """The replay with `batch`'s memory fields written into its next slot (the oldest one), and the slot advanced."""
    S, R, P = replay["prompt_BxP"].shape
    N = replay["response_BxN"].shape[2]
    if batch["response_BxN"].shape[0] != R:
        raise ValueError(f"config.memory.window: a batch of {batch['response_BxN'].shape[0]} rows does not fit the "
                         f"replay's {R} rows")
    new = dict(prompt_BxP=_fit(batch["prompt_BxP"], P, True, "prompt"),
               prompt_mask_BxP=_fit(batch["prompt_mask_BxP"], P, True, "prompt"),
               response_BxN=_fit(batch["response_BxN"], N, False, "response"),
               mask_BxN=_fit(batch["mask_BxN"], N, False, "response"),
               success_B=batch["success_B"], valid_B=batch["valid_B"])
    slot = replay["next"]
    out = {k: replay[k].at[slot].set(new[k].astype(replay[k].dtype)) for k in REPLAY_KEYS}
    out["next"] = (slot + 1) % S
    return out


def replay_chunks(replay: dict, chunks_per_slot: int) -> dict:
    """The replay's batches as [W - 1 times chunks_per_slot, rows / chunks_per_slot, ...] chunks of consecutive
    rows (whole groups when the rows per chunk are a multiple of the group size)."""
    S, R = replay["valid_B"].shape
    C = chunks_per_slot
    return {k: replay[k].reshape(S * C, R // C, *replay[k].shape[2:]) for k in REPLAY_KEYS}
