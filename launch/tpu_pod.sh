#!/usr/bin/env bash
# Run rlvr_jax on a Cloud TPU VM slice (one or many hosts): every step is a sub-command.
#
#   export TPU_NAME=rlvr ZONE=us-east5-a ACCELERATOR_TYPE=v5p-32 RUNTIME_VERSION=v2-alpha-tpuv5
#   export CONFIG=configs/paper_qwen3_4b.py CKPT=gs://my-bucket/rlvr/qwen3-4b-iac
#   launch/tpu_pod.sh create            # the slice (SPOT=1 for spot capacity)
#   launch/tpu_pod.sh install           # copy this checkout to every worker, pip install -e '.[tpu]'
#   launch/tpu_pod.sh run [--config.x=y ...]   # the same rlvr-train command on all workers, in the background
#   launch/tpu_pod.sh logs              # stream worker 0's log
#   launch/tpu_pod.sh resume            # after a preemption: recreate if needed, reinstall, run again
#   launch/tpu_pod.sh stop              # SIGTERM on every worker: the run saves a checkpoint and exits
#   launch/tpu_pod.sh delete            # delete the slice
# Other sub-commands: status, ssh CMD (on all workers), compile (rlvr-compile on worker 0).
#
# Checkpoints must live where every worker sees them (a gs:// bucket): CKPT is passed as
# --config.checkpoint.dir, and checkpoint.resume=True (the default) continues from the newest step.
# JAX finds the other hosts by itself on a TPU slice (jax.distributed.initialize() without arguments).
# DRY_RUN=1 prints the gcloud commands instead of running them.
set -euo pipefail

TPU_NAME="${TPU_NAME:-rlvr}"
ZONE="${ZONE:-us-east5-a}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v5p-8}"
RUNTIME_VERSION="${RUNTIME_VERSION:-v2-alpha-tpuv5}"
PROJECT="${PROJECT:-}"
SPOT="${SPOT:-0}"
CONFIG="${CONFIG:-configs/demo.py}"
CKPT="${CKPT:-}"
REMOTE_DIR="${REMOTE_DIR:-rlvr_jax}"
LOG_FILE="${LOG_FILE:-rlvr_run.log}"
DRY_RUN="${DRY_RUN:-0}"

usage() {
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
}

gc() {
  # gcloud with the project flag when set; DRY_RUN=1 only prints.
  local args=("$@")
  if [[ -n "$PROJECT" ]]; then
    args+=("--project=$PROJECT")
  fi
  if [[ "$DRY_RUN" == "1" ]]; then
    printf 'gcloud'
    printf ' %q' "${args[@]}"
    printf '\n'
  else
    gcloud "${args[@]}"
  fi
}

on_workers() {
  # on_workers WORKER COMMAND: run COMMAND over ssh on worker WORKER ("all" or an index).
  gc compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker="$1" --command="$2"
}

state() {
  if [[ "$DRY_RUN" == "1" ]]; then
    echo "READY"
    return
  fi
  gc compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" --format='value(state)' 2>/dev/null || echo "MISSING"
}

cmd_create() {
  local extra=()
  if [[ "$SPOT" == "1" ]]; then
    extra+=(--spot)
  fi
  gc compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION" "${extra[@]}"
}

cmd_install() {
  # Ship the tracked files of this checkout (no .venv, runs or caches) and install on every worker.
  local root tarball
  root="$(cd "$(dirname "$0")/.." && pwd)"
  tarball="$(mktemp -t rlvr_jax.XXXXXX).tar.gz"
  (cd "$root" && git ls-files -z | tar --null -czf "$tarball" -T -)
  gc compute tpus tpu-vm scp "$tarball" "$TPU_NAME:rlvr_jax.tar.gz" --zone="$ZONE" --worker=all
  on_workers all "mkdir -p $REMOTE_DIR && tar -xzf rlvr_jax.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && \
python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[tpu]'"
  rm -f "$tarball"
}

cmd_run() {
  # The same command on every worker; each worker logs to ~/$LOG_FILE and records its pid.
  local cmdline="--config $CONFIG"
  if [[ -n "$CKPT" ]]; then
    cmdline="$cmdline --config.checkpoint.dir=$CKPT"
  fi
  local a
  for a in "$@"; do
    cmdline="$cmdline $(printf '%q' "$a")"
  done
  on_workers all "cd $REMOTE_DIR && nohup .venv/bin/rlvr-train $cmdline > ~/$LOG_FILE 2>&1 & echo \$! > ~/rlvr_run.pid"
}

cmd_logs() {
  on_workers 0 "tail -n 200 -F ~/$LOG_FILE"
}

cmd_stop() {
  # SIGTERM: the loop saves a checkpoint and exits 0 (preemption-safe).
  on_workers all "if [ -f ~/rlvr_run.pid ]; then kill -TERM \$(cat ~/rlvr_run.pid) || true; fi"
}

cmd_resume() {
  # After a preemption a spot slice is PREEMPTED (or gone): recreate it, reinstall, and run again;
  # the run resumes from the newest complete checkpoint in $CKPT.
  local s
  s="$(state)"
  echo "slice $TPU_NAME is $s"
  if [[ "$s" != "READY" ]]; then
    if [[ "$s" != "MISSING" ]]; then
      cmd_delete
    fi
    cmd_create
    cmd_install
  fi
  if [[ -z "$CKPT" ]]; then
    echo "warning: CKPT is empty; checkpoints on the workers' local disks do not survive a recreated slice" >&2
  fi
  cmd_run "$@"
}

cmd_delete() {
  gc compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet
}

cmd_status() {
  state
}

cmd_compile() {
  # Plan the config on this slice's real chips (same report as rlvr-compile --topology).
  on_workers 0 "cd $REMOTE_DIR && .venv/bin/rlvr-compile --config $CONFIG $*"
}

main() {
  local sub="${1:-help}"
  shift || true
  case "$sub" in
    create) cmd_create ;;
    install) cmd_install ;;
    run) cmd_run "$@" ;;
    logs) cmd_logs ;;
    stop) cmd_stop ;;
    resume) cmd_resume "$@" ;;
    delete) cmd_delete ;;
    status) cmd_status ;;
    compile) cmd_compile "$@" ;;
    ssh) on_workers all "$*" ;;
    help | -h | --help) usage ;;
    *)
      echo "tpu_pod.sh: unknown sub-command '$sub'" >&2
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
