"""Ground floor for configuration values: the user-facing `ConfigError` and comma-list parsing.

Any layer may import this; only `train` and above import the schema (`rlvr_jax.config`), which reads
its choice lists from the modules that own them.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing configuration error; the message names the field."""


def int_list(text: str, field: str) -> tuple[int, ...]:
    """Parses a comma list of positive ints (e.g. eval.ks); ConfigError naming `field` otherwise."""
    try:
        vals = tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"config.{field}: {text!r} is not a comma list of integers") from None
    if not vals or any(v <= 0 for v in vals):
        raise ConfigError(f"config.{field}: {text!r} must list positive integers")
    return vals
