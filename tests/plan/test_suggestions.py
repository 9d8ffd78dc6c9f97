"""What `rlvr-compile` suggests when a plan does not fit: only changes the config accepts (micro-batches are
whole groups that divide the mini-batch's prompts), and LoRA when full fine-tuning's moments are the weight."""
from rlvr_jax.config import ConfigError, base_config, validate
from rlvr_jax.plan.report import suggestions

GiB = 2 ** 30


def _report(micro: int, prompts: int = 16, lora: bool = False, optimizer: float = 6.4):
    cfg = {"prompts_per_step": prompts, "mini_batches": 1, "micro_batches": micro, "group_size": 8, "remat": True,
           "prompt_len": 512, "max_new_tokens": 1024, **({"lora": {"rank": 32}} if lora else {})}
    return {"config": cfg, "target": {"hbm_bytes": 16 * GiB, "mesh": {"data": 1, "fsdp": 1, "tensor": 1}, "chips": 1},
            "bytes_per_chip": {"params": 3.2 * GiB, "optimizer": optimizer * GiB, "train_temp": 14 * GiB,
                               "kv_cache": 3.8 * GiB},
            "peak_bytes_per_chip": {"train": 24 * GiB, "sample": 14 * GiB}, "engine": {}}


def _accepted(flag: str, prompts: int) -> bool:
    cfg = base_config()
    cfg.rollout.prompts_per_step = prompts
    cfg.algo.micro_batches = int(flag.split("=")[1].split()[0])
    try:
        validate(cfg)
        return True
    except ConfigError:
        return False


def test_the_next_micro_batch_count_is_one_the_config_accepts():
    text = " ".join(suggestions(_report(micro=4, prompts=12)))
    flag = next(w for w in text.split() if w.startswith("--config.algo.micro_batches="))
    assert flag == "--config.algo.micro_batches=6" and _accepted(flag, 12)  # 8 does not divide 12 prompts


def test_one_group_per_micro_batch_suggests_shorter_responses_not_more_micro_batches():
    text = " ".join(suggestions(_report(micro=16)))
    assert "--config.algo.micro_batches=" not in text and "already one group of 8" in text
    assert "max_new_tokens" in text and "larger slice" in text


def test_full_fine_tuning_heavy_with_moments_is_pointed_at_lora():
    assert "lora_rank" in " ".join(suggestions(_report(micro=16)))
    assert "lora_rank" not in " ".join(suggestions(_report(micro=16, lora=True)))
    assert "lora_rank" not in " ".join(suggestions(_report(micro=16, optimizer=1.0)))
