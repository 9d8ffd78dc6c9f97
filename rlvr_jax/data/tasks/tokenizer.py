"""A tiny character-level tokenizer for the embedded token tasks (vocab 52, ships with the package)."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

PAD, BOS, EOS = 0, 1, 2
_SPECIALS = ("<pad>", "<bos>", "<eos>")
_CHARS = "0123456789" + " +-*=,:?()/." + "abcdefghijklmnopqrstuvwxyz"


class TinyTokenizer:
    """Characters <-> ids. PAD=0, BOS=1, EOS=2, then digits, a few symbols and lowercase letters."""

    pad_id = PAD
    bos_id = BOS
    eos_id = EOS

    def __init__(self):
        self.itos = list(_SPECIALS) + list(_CHARS)
        self.stoi = {c: i for i, c in enumerate(self.itos) if i >= len(_SPECIALS)}
        self.vocab_size = len(self.itos)
        self.digit_ids = np.array([self.stoi[str(d)] for d in range(10)], np.int32)

    def token_id(self, ch: str) -> int:
        """Id of one character; ValueError naming it if it is not in the vocabulary."""
        try:
            return self.stoi[ch]
        except KeyError:
            raise ValueError(f"TinyTokenizer: character {ch!r} is not in the vocabulary {_CHARS!r}") from None

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of the characters of `text` (optionally with BOS first / EOS last)."""
        ids = [self.token_id(c) for c in text]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids up to the first EOS; PAD and BOS are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i] if 0 <= i < self.vocab_size else "")
        return "".join(out)

    def pad_left(self, seqs: Sequence[Sequence[int]], length: int) -> np.ndarray:
        """Left-pads id lists with PAD to `length` -> int32 [B, length]; ValueError if one is longer."""
        out = np.full((len(seqs), length), PAD, np.int32)
        for b, s in enumerate(seqs):
            if len(s) > length:
                raise ValueError(f"TinyTokenizer: sequence of {len(s)} tokens exceeds length {length}")
            if len(s):
                out[b, length - len(s):] = s
        return out

    def pad_right(self, seqs: Sequence[Sequence[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Right-pads id lists with PAD -> (int32 [B, length] ids, bool [B, length] mask of real tokens)."""
        ids = np.full((len(seqs), length), PAD, np.int32)
        mask = np.zeros((len(seqs), length), bool)
        for b, s in enumerate(seqs):
            if len(s) > length:
                raise ValueError(f"TinyTokenizer: sequence of {len(s)} tokens exceeds length {length}")
            ids[b, :len(s)] = s
            mask[b, :len(s)] = True
        return ids, mask
