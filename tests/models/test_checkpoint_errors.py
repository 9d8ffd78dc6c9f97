"""Bad checkpoints give one clear line naming the tensor/key and the file."""
import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from rlvr_jax import models
from rlvr_jax.models import gguf_io, hf_io


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny Llama checkpoint written by us, with an untied head, in the two file layouts."""
    cfg = models.tiny("llama", tie_word_embeddings=False)
    graphdef, state = nnx.split(models.abstract(cfg))
    flat = [(p, v.replace(jnp.ones(v.shape, v.dtype))) for p, v in nnx.to_flat_state(state)]
    model = nnx.merge(graphdef, nnx.from_flat_state(flat))
    single = str(tmp_path_factory.mktemp("single"))
    sharded = str(tmp_path_factory.mktemp("sharded"))
    models.save_pretrained(model, single)
    models.save_pretrained(model, sharded, shard_size_mb=0.05)
    return single, sharded


def copy(src, tmp_path):
    dst = str(tmp_path / "ckpt")
    shutil.copytree(src, dst)
    return dst


def edit_config(folder, **changes):
    fn = os.path.join(folder, "config.json")
    with open(fn) as f:
        d = json.load(f)
    d.update(changes)
    with open(fn, "w") as f:
        json.dump(d, f)


def edit_tensors(folder, fn, edit):
    path = os.path.join(folder, fn)
    t = load_file(path)
    edit(t)
    save_file(t, path)


def error_line(folder, *needles):
    with pytest.raises(ValueError) as e:
        hf_io.from_pretrained(folder)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_missing_config(saved, tmp_path):
    d = copy(saved[0], tmp_path)
    os.remove(os.path.join(d, "config.json"))
    error_line(d, "missing config.json", d)


def test_unknown_architecture(saved, tmp_path):
    d = copy(saved[0], tmp_path)
    edit_config(d, architectures=["GPT2LMHeadModel"])
    error_line(d, "unknown architecture", "GPT2LMHeadModel", "config.json")


def test_missing_tensor(saved, tmp_path):
    d = copy(saved[0], tmp_path)
    edit_tensors(d, "model.safetensors", lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    error_line(d, "missing tensor model.layers.1.mlp.up_proj.weight", "model.safetensors")


def test_unexpected_tensor(saved, tmp_path):
    d = copy(saved[0], tmp_path)
    edit_tensors(d, "model.safetensors", lambda t: t.update({"model.layers.0.self_attn.o_proj.bias":
                                                             np.zeros(64, np.float32)}))
    error_line(d, "unexpected tensor model.layers.0.self_attn.o_proj.bias", "model.safetensors")


def test_shape_mismatch(saved, tmp_path):
    d = copy(saved[0], tmp_path)
    edit_config(d, intermediate_size=96)
    msg = error_line(d, "model.layers.0.mlp.", "model.safetensors", "shape")
    assert "(128, 64)" in msg and "(96, 64)" in msg  # HF [out, in] orientation, as found and as expected


def test_sharded_errors(saved, tmp_path):
    d = copy(saved[1], tmp_path)
    index = os.path.join(d, hf_io.INDEX_FILE)
    with open(index) as f:
        wm = json.load(f)["weight_map"]
    assert len(set(wm.values())) > 1
    shard = wm["model.layers.1.mlp.up_proj.weight"]
    os.remove(os.path.join(d, shard))
    error_line(d, shard, "missing file", hf_io.INDEX_FILE)
    d2 = copy(saved[1], tmp_path / "b")
    with open(os.path.join(d2, hf_io.INDEX_FILE)) as f:
        idx = json.load(f)
    del idx["weight_map"]["model.norm.weight"]
    with open(os.path.join(d2, hf_io.INDEX_FILE), "w") as f:
        json.dump(idx, f)
    error_line(d2, "missing tensor model.norm.weight", hf_io.INDEX_FILE)


def test_tied_checkpoint_with_extra_head_is_accepted(saved, tmp_path):
    """HF exports sometimes keep lm_head.weight although tied: it is ignored, not an error."""
    d = copy(saved[0], tmp_path)
    edit_config(d, tie_word_embeddings=True)
    m = hf_io.from_pretrained(d)
    assert m.lm_head is None


@pytest.mark.parametrize("changes,needle", [
    (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}), "rope_type 'yarn'"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 1e4}), "lacks 'factor'"),
    (dict(attention_bias=True), "attention_bias=true"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(num_kv_heads=3), None),  # unknown extra keys are ignored
])
def test_unsupported_config(saved, tmp_path, changes, needle):
    d = copy(saved[0], tmp_path)
    edit_config(d, **changes)
    if needle is None:
        hf_io.from_pretrained(d)
    else:
        error_line(d, needle, "config.json")


def test_not_a_folder(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        models.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="GGUF file .*nope.gguf does not exist"):
        models.from_pretrained(str(tmp_path / "nope.gguf"))


def test_gguf_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'gpt2'") as e:
        gguf_io.hf_config_from_gguf({"general.architecture": "gpt2"}, "x.gguf")
    assert "x.gguf" in str(e.value)
    with pytest.raises(ValueError, match="missing metadata key llama.embedding_length"):
        gguf_io.hf_config_from_gguf({"general.architecture": "llama", "llama.attention.head_count": 4}, "x.gguf")


def test_export_rejects_inexpressible_config(tmp_path):
    with pytest.raises(ValueError, match="no transformers architecture"):
        hf_io.config_to_hf(models.tiny("llama", qk_norm=True))
