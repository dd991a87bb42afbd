# Sourced by every */scripts/*.sh from the repository root: sets LAUNCH, the command that starts an entry point.
#   PYTHON=...                 the interpreter (default .venv/bin/python when present, else python3)
#   TORCHRUN="..."             launch through torchrun with these arguments, e.g.
#     TORCHRUN="--standalone --nproc_per_node 4"                                    one machine, 4 processes
#     TORCHRUN="--nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint host0:29500 --rdzv_id run1"
#                                                                                   each of 2 machines
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
LAUNCH=("$PY")
if [ -n "${TORCHRUN:-}" ]; then
  read -ra _torchrun_args <<< "$TORCHRUN"
  LAUNCH=("$PY" -m torch.distributed.run "${_torchrun_args[@]}")
fi
