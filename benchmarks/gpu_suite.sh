#!/usr/bin/env bash
# The GPU figures this project lacks most, in one results file. On a CUDA machine, from anywhere:
#
#   bash benchmarks/gpu_suite.sh                        # every step, about 46 minutes
#   bash benchmarks/gpu_suite.sh --only tests,bench     # some steps (a tool that limits one command to 10 minutes:
#   bash benchmarks/gpu_suite.sh --only tm,fit,dm       #   run the steps in two or three calls, same --out)
#   bash benchmarks/gpu_suite.sh --dry-run              # print the plan, run nothing (works without a GPU)
#
# Steps (each under its own time limit; a step that fails or times out is reported and the next one runs):
#   tests  the test suite, device-generic tests and end-to-end runs on CUDA (DD_TEST_DEVICE=cuda)
#   bench  benchmarks/bench_ddif.py on CUDA: batched DDiF vs a loop of per-field SIREN modules (target >= x100)
#   3d     benchmarks/bench_ddif.py on CUDA for 3-D sets: miniUCF101-shaped video (one 8,483-parameter field per
#          class, and the budget-filled 50 x 70 fields, at 16x112x112) and ModelNet10-shaped voxels (10 x 34 fields
#          of 941 parameters at 32^3), decode + backward + Adam step
#   tm     benchmarks/bench_tm_memory.py on CUDA: peak memory and time of one TM iteration at syn_steps 10-80,
#          unroll vs recompute; then the largest syn_steps each method runs for CIFAR-100-shaped ipc 10
#   fit    benchmarks/bench_fit.py: 1,000 fields of 963 parameters fitted to 1,000 128x128 targets for 1,000 Adam
#          steps (target <= 10 s and <= 300 MB of peak GPU memory), at three decoder chunk sizes
#   dist   benchmarks/bench_dist.py on CUDA: 1 against 2 processes sharing the GPU (gloo), evaluation and expert
#          build; then the same evaluation with NCCL forced (DD_DIST_BACKEND=nccl; NCCL may refuse two processes
#          on one GPU, which is then what the step reports)
#   dm     Fashion-MNIST, DM, ipc 1, DDiF at the paper's protocol (20,000 iterations, evaluation every 2,000 by
#          5 ConvNets x 1,000 epochs, 5,000-step warm start), run until --dm_minutes is up
#
# Options: --out FILE (results, appended; default gpu_suite_results.md), --python PY (default .venv/bin/python if
# present, else python3), --data_path DIR (Fashion-MNIST; default data, or the Debian package), --dm_minutes N (8).
# A machine without internet needs Fashion-MNIST under data/FashionMNIST/raw/ and, for the ZCA tests, kornia.
# Exit status: 0 when every step gave its result, 1 when one failed or ran out of time, 2 for bad options.
set -uo pipefail

OUT=gpu_suite_results.md
ONLY=tests,bench,3d,tm,fit,dist,dm
DRY=0
DM_MINUTES=8
DATA_PATH=data
PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; shift; continue ;;
    -h|--help) sed -n '2,20p' "$0" | cut -c3-; exit 0 ;;
    --out|--only|--dm_minutes|--data_path|--python)
      if [ $# -lt 2 ]; then echo "error: $1 needs a value" >&2; exit 2; fi ;;
    *) echo "error: unknown option '$1' (valid: --out --only --dry-run --dm_minutes --data_path --python)" >&2
       exit 2 ;;
  esac
  case "$1" in
    --out) OUT=$2 ;;
    --only) ONLY=$2 ;;
    --dm_minutes) DM_MINUTES=$2 ;;
    --data_path) DATA_PATH=$2 ;;
    --python) PY=$2 ;;
  esac
  shift 2
done
case "$DM_MINUTES" in
  ''|*[!0-9]*) echo "error: --dm_minutes must be a whole number of minutes, got '$DM_MINUTES'" >&2; exit 2 ;;
esac
for s in ${ONLY//,/ }; do
  case "$s" in
    tests|bench|3d|tm|fit|dist|dm) ;;
    *) echo "error: unknown step '$s' in --only (valid: tests, bench, 3d, tm, fit, dist, dm)" >&2; exit 2 ;;
  esac
done

# paths are given relative to where the suite was started; the steps run from the repository root
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
OUT=$(abspath "$OUT")
[ -d "$DATA_PATH" ] && DATA_PATH=$(abspath "$DATA_PATH")
case "$PY" in */*) PY=$(abspath "$PY") ;; esac
cd "$(dirname "$0")/.." || exit 2
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=$PWD/.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DD_NO_DOWNLOAD=1
DM_DIR=runs/gpu_suite
DM_RUN=$DM_DIR/DM/FashionMNIST/dm_ddif_ipc1
py=$(printf '%q' "$PY")
data=$(printf '%q' "$DATA_PATH")

# one line per step: name|time limit in seconds|command
plan() {
  echo "tests|480|DD_TEST_DEVICE=cuda $py -m pytest -q -p no:cacheprovider"
  echo "bench|420|$py benchmarks/bench_ddif.py --device cuda"
  echo "3d|420|$py benchmarks/bench_ddif.py --device cuda --modes step --steps 2 --configs ucf_dipc1 ucf_budget" \
       "modelnet10_ipc1"
  echo "tm|420|$py benchmarks/bench_tm_memory.py --device cuda --cases fmnist_ipc1_ddif cifar10_ipc10_pixel" \
       "&& $py benchmarks/bench_tm_memory.py --device cuda --cases cifar100_ipc10_pixel --find_max --max_steps 640"
  echo "fit|300|$py benchmarks/bench_fit.py --device cuda --data_path $data --chunk_elements 0 16777216 4194304"
  echo "dist|420|$py benchmarks/bench_dist.py --device cuda --data_path $data --epochs 300 --expert_epochs 3" \
       "--n_train 1000 && { DD_DIST_BACKEND=nccl $py benchmarks/bench_dist.py --device cuda --data_path $data" \
       "--what eval --epochs 100 || echo 'NCCL with 2 processes on this GPU: failed (above)'; }"
  echo "dm|$((DM_MINUTES * 60))|$py DM/main_DM.py --synset ddif --dataset FashionMNIST --ipc 1 --device cuda" \
       "--data_path $data --save_path $DM_DIR --exp_name dm_ddif_ipc1 --init_cache '' --no-progress"
}

if [ "$DRY" = 1 ]; then
  echo "gpu_suite plan (python: $PY; results appended to $OUT; steps: $ONLY):"
  plan | while IFS='|' read -r name limit cmd; do
    case ",$ONLY," in *",$name,"*) printf '  %-6s limit %4ss: %s\n' "$name" "$limit" "$cmd" ;; esac
  done
  exit 0
fi

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "error: $PY sees no CUDA GPU; this suite is for a CUDA machine (try --dry-run)" >&2
  exit 2
fi

{
  echo "# GPU suite, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  "$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"device: {p.name}, \
{p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs; torch {torch.__version__}")'
} >> "$OUT"

dm_rows() {  # the evaluations the dm step finished
  [ -f "$DM_RUN/metrics.jsonl" ] || return 0
  "$PY" - "$DM_RUN/metrics.jsonl" <<'PY'
import json, sys
for r in (json.loads(line) for line in open(sys.argv[1]) if line.strip()):
    print(f"iteration {r['iteration']:>6}: {r['model']} {100 * r['acc_mean']:.2f} +- {100 * r['acc_std']:.2f} "
          f"({r['num_eval']} nets), wall {r['wall_time']:.0f}s")
PY
}

failed=0
while IFS='|' read -r name limit cmd; do
  case ",$ONLY," in *",$name,"*) ;; *) continue ;; esac
  [ "$name" = dm ] && rm -rf "$DM_DIR"
  log=$(mktemp)
  echo "== $name (limit ${limit}s): $cmd"
  start=$(date +%s)
  timeout --signal=INT --kill-after=30 "$limit" bash -c "$cmd" < /dev/null > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  # the dm step is meant to run until its time limit; any other step that reaches it gave no result
  case $rc in
    0) status="ok" ;;
    124) if [ "$name" = dm ]; then status="ran until its time limit, as planned"
         else status="FAILED: stopped at its time limit"; failed=1; fi ;;
    137) status="FAILED: killed 30 s after its time limit"; failed=1 ;;
    *) status="FAILED (exit $rc)"; failed=1 ;;
  esac
  {
    echo
    echo "## $name: $status, ${secs}s"
    echo '```'
    echo "\$ $cmd"
    case $name in
      tests) grep -E "passed|failed|error|SKIPPED|FAILED" "$log" | tail -n 40 ;;
      dm) grep -E "filled|initialised|it +[0-9]+ |done:|error" "$log" | tail -n 30; dm_rows ;;
      *) tail -n 40 "$log" ;;
    esac
    echo '```'
  } >> "$OUT"
  tail -n 5 "$log"
  rm -f "$log"
done < <(plan)
echo "results: $OUT"
exit $failed
