"""Dataset readers (JSONL, Parquet, HF folders, tfds array_record), schema converters, prompt templates,
and malformed rows: one clear error with file:line, or skipped and counted."""
import json

import pytest

from rlvr_jax.config import base_config
from rlvr_jax.data import readers
from rlvr_jax.data.schemas import BadRow, DataError, make_converter
from rlvr_jax.data.sources import make_source
from rlvr_jax.data.templates import DEFAULT_PLAIN, make_template

GOOD = b'{"prompt": "What is 1+1?", "answer": "2"}'
BAD_LINES = {
    "bad JSON": b'{"prompt": "x", "answer": ',
    "missing key 'answer'": b'{"prompt": "q", "solution": "3"}',
    "field 'answer' is empty": b'{"prompt": "q", "answer": "   "}',
    "not valid UTF-8": b'{"prompt": "caf\xe9", "answer": "1"}',
    "not an object": b"[1, 2]",
    "field 'answer' is None": b'{"prompt": "q", "answer": null}',
}


def _cfg(source, path, **data):
    cfg = base_config()
    cfg.data.source, cfg.data.path = source, str(path)
    cfg.data.eval_size = 0  # these files are a handful of rows, all training
    for k, v in data.items():
        cfg.data[k] = v
    return cfg


def _rows(src, n=None):
    rows, _ = src.take(n or len(src))
    return rows


@pytest.mark.parametrize("reason", sorted(BAD_LINES))
def test_jsonl_bad_row_names_file_and_line(tmp_path, reason):
    path = tmp_path / "d.jsonl"
    path.write_bytes(GOOD + b"\n\n" + BAD_LINES[reason] + b"\n" + GOOD + b"\n")
    with pytest.raises(DataError) as e:
        make_source(_cfg("jsonl", path))
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: ") and reason in msg and "\n" not in msg, msg


def test_jsonl_skip_counts_bad_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join([GOOD, *BAD_LINES.values(), b"", GOOD.replace(b"1+1", b"2+2")]) + b"\n")
    src = make_source(_cfg("jsonl", path, on_bad_row="skip", template="none"))
    assert len(src) == 2 and src.bad_rows == len(BAD_LINES)
    assert sorted(r["prompt"] for r in _rows(src)) == ["What is 1+1?", "What is 2+2?"]
    assert src.metrics() == {"data/bad_rows": float(len(BAD_LINES)), "data/rows": 2.0}
    assert src.first_bad[0].startswith(f"{path}:2: bad JSON")
    assert sum(src.bad_reasons.values()) == len(BAD_LINES)


def test_all_rows_bad_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(BAD_LINES["bad JSON"] + b"\n")
    with pytest.raises(DataError, match="no usable rows"):
        make_source(_cfg("jsonl", path, on_bad_row="skip"))
    with pytest.raises(DataError, match="does not exist"):
        make_source(_cfg("jsonl", tmp_path / "missing.jsonl"))


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"problem": ["Find x.", "Find y."], "answer": [7, 8]}), good)  # AIME-style ints
    src = make_source(_cfg("parquet", good, schema="aime", template="none"))
    assert sorted((r["prompt"], r["answer"], r["reference"]) for r in _rows(src)) == [
        ("Find x.", "7", "7"), ("Find y.", "8", "8")]
    assert {r["id"] for r in _rows(src)} == {f"{good}:row 0", f"{good}:row 1"}
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b", "c"], "answer": [b"1", b"\xff\xfe", None]}), bad)
    with pytest.raises(DataError, match=rf"^{bad}:row 1: field 'answer' is not valid UTF-8"):
        make_source(_cfg("parquet", bad))
    src = make_source(_cfg("parquet", bad, on_bad_row="skip"))
    assert len(src) == 1 and src.bad_rows == 2


def test_hf_folder_with_math_schema(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "hf"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({
        "problem": ["p0", "p1", "p2"],
        "solution": ["so \\boxed{\\frac{1}{2}}.", "no box here", "first \\boxed{1} then \\boxed{x^{2}}"],
    })}).save_to_disk(str(path))
    with pytest.raises(DataError, match=rf"^{path}\[train\]:row 1: field 'solution' has no \\boxed"):
        make_source(_cfg("hf", path, schema="math"))
    src = make_source(_cfg("hf", path, schema="math", on_bad_row="skip", template="none"))
    assert sorted(r["answer"] for r in _rows(src)) == ["\\frac{1}{2}", "x^{2}"] and src.bad_rows == 1
    with pytest.raises(DataError, match="config.data.split: 'test' not in"):
        make_source(_cfg("hf", path, schema="math", split="test"))


@pytest.fixture(scope="module")
def tfds_folder(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")
    root = tmp_path_factory.mktemp("tfds")

    class TinyGsm(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"question": tfds.features.Text(), "answer": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield 0, {"question": "Tom has 2 apples...", "answer": "2 + 3 = 5\n#### 5"}
            yield 1, {"question": "A farm has...", "answer": "no final marker"}
            yield 2, {"question": "Costs?", "answer": "so\n#### 1,200"}

    builder = TinyGsm(data_dir=str(root), file_format="array_record")
    builder.download_and_prepare()
    return builder.data_dir


def test_tfds_array_record_without_tensorflow(tfds_folder):
    import sys

    with pytest.raises(DataError, match=r":row 1: field 'answer' has no '####'"):
        make_source(_cfg("tfds", tfds_folder, schema="gsm8k"))
    src = make_source(_cfg("tfds", tfds_folder, schema="gsm8k", on_bad_row="skip", template="none"))
    assert sorted((r["prompt"], r["answer"]) for r in _rows(src)) == [("Costs?", "1200"),
                                                                     ("Tom has 2 apples...", "5")]
    assert "tensorflow" not in sys.modules
    with pytest.raises(DataError, match="not a prepared tfds builder folder"):
        make_source(_cfg("tfds", str(tfds_folder) + "/.."))


def test_tfds_missing_package_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tfds(name, *args, **kwargs):
        if name.startswith("tensorflow_datasets"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tfds)
    with pytest.raises(DataError, match=r"tensorflow-datasets: pip install 'rlvr_jax\[data\]'"):
        list(readers.read_tfds(str(tmp_path), "train"))


def test_schema_converters():
    deep = make_converter("deepscaler")
    assert deep({"problem": "P", "answer": "\\frac{1}{2}"}) == ("P", "\\frac{1}{2}")
    gsm = make_converter("gsm8k")
    assert gsm({"question": "Q", "answer": "work\n#### 1,234"}) == ("Q", "1234")
    aime = make_converter("aime")
    assert aime({"Problem": "P", "Answer": 204}) == ("P", "204")  # capitalised keys, int answer
    math = make_converter("math")
    assert math({"problem": "P", "solution": "\\boxed{\\{1,2\\}}"}) == ("P", "\\{1,2\\}")
    keys = make_converter("", "q", "a")
    assert keys({"q": "Q", "a": " 3 "}) == ("Q", "3")
    with pytest.raises(BadRow, match=r"missing key 'q' \(row has: x\)"):
        keys({"x": 1})
    with pytest.raises(BadRow, match="field 'a' is True"):
        keys({"q": "Q", "a": True})
    with pytest.raises(DataError, match="config.data.schema"):
        make_converter("alpaca")


def test_field_mapping_from_config(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"instruction": f"q{i}", "target": str(i)}) for i in range(4)) + "\n")
    src = make_source(_cfg("jsonl", path, prompt_key="instruction", answer_key="target", template="none"))
    assert sorted((r["prompt"], r["answer"]) for r in _rows(src)) == [(f"q{i}", str(i)) for i in range(4)]
    with pytest.raises(DataError, match=":1: missing key 'prompt'"):
        make_source(_cfg("jsonl", path))


class FakeChatTokenizer:
    """Any object with apply_chat_template works (an HF tokenizer in practice)."""

    chat_template = "<fake>"

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        self.calls.append((messages, tokenize, add_generation_prompt))
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


def test_templates(tmp_path):
    assert make_template("none")("Q") == "Q"
    assert make_template("plain")("What is 2+2?") == DEFAULT_PLAIN.replace("{question}", "What is 2+2?")
    assert make_template("plain", plain_template="Q: {question}\nA:")("x {y}") == "Q: x {y}\nA:"
    tok = FakeChatTokenizer()
    chat = make_template("chat", tokenizer=tok, system_prompt="Be brief.", chat_suffix="")
    assert chat("Q") == "<|system|>Be brief.<|user|>Q<|assistant|>"
    assert tok.calls[0][1:] == (False, True)
    with pytest.raises(DataError, match="'chat' needs a tokenizer with apply_chat_template"):
        make_template("chat")
    with pytest.raises(DataError, match="no {question} placeholder"):
        make_template("plain", plain_template="Answer:")
    # through the config: data.template and data.system_prompt reach the prompt
    path = tmp_path / "d.jsonl"
    path.write_bytes(GOOD + b"\n")
    src = make_source(_cfg("jsonl", path, template="chat", system_prompt="S"), tokenizer=FakeChatTokenizer())
    assert _rows(src)[0]["prompt"].startswith("<|system|>S<|user|>What is 1+1?")
    src = make_source(_cfg("jsonl", path, template="plain"))
    assert _rows(src)[0]["prompt"].startswith("Question: What is 1+1?\n")
