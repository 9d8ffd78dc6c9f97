#!/usr/bin/env bash
# Run rlvr_jax on a single TPU VM (v5e-1/-4/-8, v6e-1/-8, v5p-8: one host), executed ON the VM.
#
#   git clone <this repo> rlvr_jax && cd rlvr_jax
#   launch/tpu_vm.sh install                 # .venv with jax[tpu] (libtpu) and this package
#   launch/tpu_vm.sh check                   # devices, HBM per chip, a tiny compile
#   launch/tpu_vm.sh demo                    # the embedded demo (a few minutes)
#   launch/tpu_vm.sh run --config configs/paper_qwen3_4b.py --config.model.source=hf --config.model.path=...
#   launch/tpu_vm.sh compile --config configs/paper_qwen3_4b.py   # memory/FLOP plan on these chips
# A run that gets SIGTERM (preemption, `kill -TERM`) saves a checkpoint and exits 0; running the same
# command again resumes from it. To create/delete the VM itself from your machine use tpu_pod.sh
# (a single VM is a one-worker slice).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

install() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[tpu]'
}

check() {
  "$VENV/bin/python" - <<'PY'
import jax, jax.numpy as jnp
d = jax.devices()
print(f"{jax.process_count()} process(es), {len(d)} x {d[0].device_kind}")
stats = d[0].memory_stats() or {}
if "bytes_limit" in stats:
    print(f"HBM per device: {stats['bytes_limit'] / 2**30:.1f} GiB")
print("matmul ok:", float(jax.jit(lambda x: (x @ x).sum())(jnp.ones((512, 512), jnp.bfloat16))))
PY
}

sub="${1:-help}"
shift || true
case "$sub" in
  install) install ;;
  check) check ;;
  demo) exec "$VENV/bin/rlvr-train" --config configs/demo.py "$@" ;;
  run) exec "$VENV/bin/rlvr-train" "$@" ;;
  compile) exec "$VENV/bin/rlvr-compile" "$@" ;;
  help | -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "tpu_vm.sh: unknown sub-command '$sub' (install, check, demo, run, compile)" >&2
    exit 2
    ;;
esac
