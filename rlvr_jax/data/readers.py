"""Local dataset readers: JSONL, Parquet, HF `datasets` folders (load_from_disk), tfds array_record.

Each reader yields (location, raw row or BadRow) with a location like `file.jsonl:12`, and
`load_rows` converts and validates every row up front, so a malformed row stops the run at
start-up with one line naming where it is (or is skipped and counted with data.on_bad_row='skip').
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Callable, Iterator

from rlvr_jax.data.schemas import BadRow, DataError

Row = tuple[str, Any]  # (location, raw row dict | BadRow)
FILE_KINDS = ("jsonl", "parquet", "hf", "tfds")  # data.source values read from a file or folder
ON_BAD_ROW = ("error", "skip")
SOURCES = ("embedded", "reasoning_gym") + FILE_KINDS  # every data.source (sources.make_source builds each)


def read_jsonl(path: str) -> Iterator[Row]:
    """One JSON object per line; blank lines are ignored; lines are numbered from 1."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            loc = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield loc, BadRow(f"line is not valid UTF-8 ({e.reason} at byte {e.start})")
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield loc, BadRow(f"bad JSON ({e.msg} at column {e.colno})")
                continue
            yield loc, obj if isinstance(obj, dict) else BadRow(f"line is a JSON {type(obj).__name__}, not an object")


def read_parquet(path: str) -> Iterator[Row]:
    """Rows of a Parquet file (or every *.parquet file of a folder, in name order); rows counted from 0."""
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise DataError("data.source='parquet' needs pyarrow: pip install 'rlvr_jax[data]'") from None
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet")) \
        if os.path.isdir(path) else [path]
    for file in files:
        try:
            table = pq.read_table(file)
        except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a broken file)
            raise DataError(f"{file}: cannot read Parquet ({e})") from None
        for i, row in enumerate(table.to_pylist()):
            yield f"{file}:row {i}", row


def read_hf(path: str, split: str) -> Iterator[Row]:
    """Rows of a local HF `datasets` folder written by save_to_disk (a Dataset or a DatasetDict split)."""
    try:
        import datasets  # noqa: PLC0415
    except ImportError:
        raise DataError("data.source='hf' needs the datasets package: pip install 'rlvr_jax[data]'") from None
    try:
        ds = datasets.load_from_disk(path)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a datasets folder written by save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"config.data.split: {split!r} not in {path} (splits: {', '.join(ds)})")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield f"{path}[{split}]:row {i}", row


def read_tfds(path: str, split: str) -> Iterator[Row]:
    """Rows of a prepared tfds builder folder (array_record) through `as_data_source`; no TensorFlow."""
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415
    except ImportError:
        raise DataError("data.source='tfds' needs tensorflow-datasets: pip install 'rlvr_jax[data]'") from None
    if not os.path.exists(os.path.join(path, "dataset_info.json")):
        raise DataError(f"config.data.path: {path} is not a prepared tfds builder folder (no dataset_info.json)")
    try:
        builder = tfds.builder_from_directory(path)
        source = builder.as_data_source(split=split)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot open split {split!r} as a tfds data source ({e})") from None
    for i in range(len(source)):
        yield f"{path}[{split}]:row {i}", source[i]


@dataclasses.dataclass
class Loaded:
    """Validated rows plus what was skipped."""

    rows: list[dict]
    bad_rows: int = 0
    bad_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    first_bad: list[str] = dataclasses.field(default_factory=list)  # up to 5 "location: reason" lines


def load_rows(rows: Iterator[Row], convert: Callable[[Any], tuple[str, str]], on_bad_row: str = "error") -> Loaded:
    """Converts every row to {"question", "answer", "id"}; bad rows raise DataError or are skipped and counted."""
    if on_bad_row not in ON_BAD_ROW:
        raise DataError(f"config.data.on_bad_row: {on_bad_row!r} is not one of {', '.join(map(repr, ON_BAD_ROW))}")
    out = Loaded(rows=[])
    for loc, raw in rows:
        try:
            if isinstance(raw, BadRow):
                raise raw
            question, answer = convert(raw)
        except BadRow as e:
            if on_bad_row == "error":
                raise DataError(f"{loc}: {e} (set data.on_bad_row='skip' to skip and count bad rows)") from None
            out.bad_rows += 1
            out.bad_reasons[str(e).split(" (")[0]] += 1
            if len(out.first_bad) < 5:
                out.first_bad.append(f"{loc}: {e}")
            continue
        out.rows.append({"question": question, "answer": answer, "id": loc})
    if not out.rows:
        raise DataError(f"no usable rows ({out.bad_rows} bad); first: {out.first_bad[:1] or 'the dataset is empty'}")
    return out


def read(kind: str, path: str, split: str = "train") -> Iterator[Row]:
    """The reader for data.source `kind`; DataError if the path does not exist."""
    if not os.path.exists(path):
        raise DataError(f"config.data.path: {path!r} does not exist")
    if kind == "jsonl":
        return read_jsonl(path)
    if kind == "parquet":
        return read_parquet(path)
    if kind == "hf":
        return read_hf(path, split)
    if kind == "tfds":
        return read_tfds(path, split)
    raise DataError(f"config.data.source: {kind!r} is not a file reader ({', '.join(FILE_KINDS)})")
