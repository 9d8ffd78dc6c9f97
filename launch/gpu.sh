#!/usr/bin/env bash
# Run rlvr_jax on GPUs: one process for all GPUs of a host, or one process per node on several nodes.
#
#   launch/gpu.sh install                                  # .venv with jax[cuda12] and this package
#   launch/gpu.sh run --config configs/paper_qwen3_4b.py   # one host: one process drives every visible GPU
#
# Several nodes (same command on each; JAX's multi-controller runtime, like a TPU pod):
#   COORDINATOR=10.0.0.1:12355 NUM_NODES=4 NODE_RANK=<0..3> launch/gpu.sh run --config ...
# Several processes on one host (one GPU each), e.g. to test multi-process code:
#   PROCS_PER_NODE=2 launch/gpu.sh run --config ...        # spawns 2 processes on 127.0.0.1
# SLURM: srun launch/gpu.sh run ... (rank and size come from SLURM_PROCID / SLURM_NTASKS).
# Only process 0 writes logs and summaries; checkpoints need a path every node sees.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PORT="${PORT:-12355}"

install() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e . "jax[cuda12]"
}

run() {
  local nodes="${NUM_NODES:-${SLURM_NNODES:-1}}"
  local per="${PROCS_PER_NODE:-1}"
  if [[ -n "${SLURM_PROCID:-}" && -n "${SLURM_NTASKS:-}" ]]; then
    export JAX_COORDINATOR_ADDRESS="${COORDINATOR:?set COORDINATOR=host:port of task 0}"
    export JAX_NUM_PROCESSES="$SLURM_NTASKS" JAX_PROCESS_ID="$SLURM_PROCID"
    exec "$VENV/bin/rlvr-train" "$@"
  fi
  if [[ "$nodes" == "1" && "$per" == "1" ]]; then
    exec "$VENV/bin/rlvr-train" "$@"
  fi
  local coord="${COORDINATOR:-127.0.0.1:$PORT}"
  local rank="${NODE_RANK:-0}"
  local total=$((nodes * per))
  local pids=() i
  for ((i = 0; i < per; i++)); do
    local pid_index=$((rank * per + i))
    if [[ "$per" != "1" ]]; then
      export CUDA_VISIBLE_DEVICES="$i"
    fi
    JAX_COORDINATOR_ADDRESS="$coord" JAX_NUM_PROCESSES="$total" JAX_PROCESS_ID="$pid_index" \
      "$VENV/bin/rlvr-train" "$@" &
    pids+=("$!")
  done
  local status=0 p
  for p in "${pids[@]}"; do
    wait "$p" || status=$?
  done
  return "$status"
}

sub="${1:-help}"
shift || true
case "$sub" in
  install) install ;;
  run) run "$@" ;;
  help | -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' ;;
  *)
    echo "gpu.sh: unknown sub-command '$sub' (install, run)" >&2
    exit 2
    ;;
esac
