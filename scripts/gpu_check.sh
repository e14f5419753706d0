#!/usr/bin/env bash
# Every GPU check of the project in ONE call that returns within a 10-minute device call (issue 18).
#
#   OUT=/path bash scripts/gpu_check.sh          # OUT defaults to benchmarks/results/gpu_check
#   DEADLINE_S=300 OUT=/tmp/gc bash scripts/gpu_check.sh
#   GPU_STEPS="real_shapes heads_training" DEADLINE_S=200 bash scripts/gpu_check.sh   # a second call: only these
#                                                       # steps (the build always runs; in place it is a no-op)
#   PREBUILD=1 PYTHON=<venv>/bin/python bash scripts/gpu_check.sh   # on a CPU box, before the device call: _C with
#       its CUDA kernels against that Python's torch (the GPU host's: VENV of scripts/gpu_stack_on_cpu.sh), and the
#       stamp a GPU host would write; carry hawk_kernels/_C.cpython-312-x86_64-linux-gnu.so and build/gpu_check_stamp,
#       and the GPU host's build step reads "up to date" (55 s of its minutes) if that library loads there and holds
#       the CUDA kernels (else it builds, as without them)
#
# Steps, in priority order, under ONE overall deadline (DEADLINE_S, default 540 s = 9 min): each step runs under
# `timeout` of the time left (and at most its own cap), and a step that no longer fits is recorded as skipped for
# time, so the most important results always come back:
#   build          MAX_JOBS=16 HAWK_BUILD_CUDA=1 python setup.py build_ext --inplace (CUDA forced on a GPU host;
#                  on a host without one, the C++ kernels only); everything then runs with PYTHONPATH=<repo root>,
#                  so the tests import the _C just built (never an installed copy)
#   canary         python scripts/sanitize_ops.py: every op's CUDA kernel once (60 s); if it fails, the later steps
#                  run with HAWK_KERNELS_SKIP=cuda (Triton kernels); if it hangs, the steps that call the CUDA
#                  kernels by name are skipped                                                         [GPU only]
#   tests_cuda     pytest tests -m cuda, less tests/test_compiled.py (on a GPU host a CUDA test FAILS, not skips,
#                  if _C lacks its CUDA kernels or Triton cannot run: tests/cuda_checks.py)          [GPU only]
#   e2e_7b         python benchmarks/e2e.py --skip-bundled: 7B-shaped graphed + compiled steps, AR and hawk /
#                  hawk+jacobi trees at 32 and 64 nodes, sdpa, each row with its kernels by time (3 profiled
#                  steps) and its compile form and seconds; transformers generate  [GPU; without one: --smoke]
#   kernel_bench   the pytest-benchmark files benchmarks/bench_*.py          [GPU; without one: their CPU rows, --quick]
#   tests_cuda_compiled  pytest tests/test_compiled.py -m cuda: the compiled step captured in a CUDA graph, the
#                  fusion cap's kernels, the state freed (each compiles a tiny model; after the 7B rows) [GPU only]
#   sanitizer_memcheck, sanitizer_racecheck  compute-sanitizer on scripts/sanitize_ops.py (every op once, small
#                  inputs)                                                                             [GPU only]
#   e2e_flex       the same with flex_attention (AR and hawk+jacobi at 32 nodes)                         [GPU only]
#   e2e_bundled    the bundled model, ms per image, ar / hawk / hawk+jacobi, eager and graphed         [GPU only]
#   step_ops       python benchmarks/step_ops.py: kernels per step, eager vs compiled          [GPU; without: --smoke]
#   real_shapes    python benchmarks/real_shapes.py --full: the families at their released shapes (LlamaGen last), seconds
#                  and peak memory per image, batch-16 memory runs                    [GPU; without one: --smoke]
#   tree_size      python benchmarks/tree_size.py --device cuda: num_nodes="auto" vs AR and fixed sizes, bundled
#                  model, batch 1 and 16, hawk and hawk+jacobi, graphed, not compiled     [GPU; without one: --smoke]
#   tree_size_uncalibrated  the same for jacobi with the bundled rates dropped: "auto" weighs sizes by the
#                  acceptance it measures on the model (hawk_kernels/acceptance.py)  [GPU; without one: --smoke]
#   sanitizer_synccheck, sanitizer_initcheck                                                          [GPU only]
#   heads_training python benchmarks/heads_training.py (7B shape; measured on 2026-12-04)  [GPU; without: --tiny]
# Without a GPU it still runs to the end, says which steps need one and skips them, and exits 0 if every step
# that could run passed. A failed build skips the rest.
#
# Results (at most 8 files, no folder): $OUT/summary.json (machine, versions, commit, every step's status,
# seconds and reason, the CUDA test counts and failures, the headline figures, and issue 20's and 22's targets
# judged by scripts/targets.py: met / missed / not measured, with the number and its file), $OUT/gpu_check.log
# (each step's command and the tail of its output, then the targets' table), $OUT/results.tar.gz (every step's full log and output files: JUnit XML,
# e2e JSON + PNG, kernel benchmark JSON, sanitizer logs, heads-training JSON, env.txt), and $OUT/e2e.png.
# Exit status: 0 when no step failed or timed out, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
START=$SECONDS
DEADLINE_S="${DEADLINE_S:-540}"
RESERVE_S=20  # kept back for the summary and the tarball
OUT="${OUT:-benchmarks/results/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/gpu_check.log"
STEPS="$WORK/steps.tsv"
: > "$LOG"
: > "$STEPS"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
PY="${PYTHON:-python}"

say() { echo "$*" | tee -a "$LOG"; }

if [ "${PREBUILD:-0}" = 1 ]; then  # on a CPU box: _C for the GPU host (below), then stop
  GPU=1
  say "gpu_check: PREBUILD=1: building _C with its CUDA kernels for a GPU host, against $PY's torch"
  [ -n "${CUDA_HOME:-}" ] || [ ! -d /usr/local/cuda ] || export CUDA_HOME=/usr/local/cuda
  [ -n "${MAX_JOBS:-}" ] || export MAX_JOBS="$(nproc)"
elif "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
  GPU=1
  say "gpu_check: CUDA device found: the GPU forms of every step (deadline ${DEADLINE_S} s)"
else
  GPU=0
  say "gpu_check: NO CUDA device: steps marked [GPU only] are SKIPPED; e2e, kernel_bench and heads_training run"
  say "           their CPU smoke forms (deadline ${DEADLINE_S} s)"
fi
FAILED=0
BUILD_OK=1

record() {  # name status rc seconds timeout form reason command
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$STEPS"
}

# step NAME CAP_S FORM COMMAND...   (FORM: gpu | cpu-smoke | any)
step() {
  local name="$1" cap="$2" form="$3"; shift 3
  local left=$((DEADLINE_S - RESERVE_S - (SECONDS - START)))
  if [ -n "${GPU_STEPS:-}" ] && [ "$name" != build ] && [[ " $GPU_STEPS " != *" $name "* ]]; then
    say "--- $name: not selected (GPU_STEPS=$GPU_STEPS)"
    record "$name" skipped "" 0 "" "$form" "not selected by GPU_STEPS" "$*"
    return 0
  fi
  if [ "$BUILD_OK" -eq 0 ]; then
    say "--- $name: SKIPPED (the build failed)"
    record "$name" skipped "" 0 "" "$form" "the build failed" "$*"
    return 0
  fi
  if [ "$left" -lt 10 ]; then
    say "--- $name: SKIPPED for time (${left} s left of the ${DEADLINE_S} s deadline)"
    record "$name" skipped "" 0 "" "$form" "no time left (${left} s of DEADLINE_S=${DEADLINE_S})" "$*"
    return 0
  fi
  local limit=$(( left < cap ? left : cap ))
  say "--- $name ($form, timeout ${limit} s): $*"
  local begin=$SECONDS
  timeout -k 10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$? status=passed reason=""
  local took=$((SECONDS - begin))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status=timed_out; reason="killed after ${limit} s"; FAILED=1
  elif [ "$rc" -ne 0 ]; then
    status=failed; reason="exit status $rc"; FAILED=1
  fi
  tail -n 60 "$WORK/$name.log" | sed 's/^/    /' >> "$LOG"
  say "--- $name: $status in ${took} s${reason:+ ($reason)}"
  record "$name" "$status" "$rc" "$took" "$limit" "$form" "$reason" "$*"
  return "$rc"
}

skip_gpu() {  # name reason
  say "--- $1: SKIPPED: needs a GPU ($2)"
  record "$1" skipped "" 0 "" gpu "needs a GPU: $2" ""
}

# --- environment (not a step: always)
{
  date -u
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  (command -v nvcc > /dev/null && nvcc --version) || echo "nvcc: not found"
  "$PY" - <<'PY' 2>&1
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for name in ("triton", "transformers", "numpy", "pytest", "pytest_benchmark", "matplotlib"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:
        print(name, "not importable:", exc)
PY
  git log -1 --format='commit %H %cI' 2>&1; git status --short 2>&1 | head -50
} > "$WORK/env.txt" 2>&1

# --- 1. build in place (the tests import this _C through PYTHONPATH=<repo root>). A second call on the same machine
# skips it when the sources, torch and the CUDA choice are those of the last build here: a stamp of their contents in
# build/ (kept between device calls), not file times, which a fresh copy of the tree may renew (55 s of a call).
BUILD_STAMP=build/gpu_check_stamp
build_key() {
  { find csrc -type f | LC_ALL=C sort | xargs cat; cat setup.py; echo "gpu=$GPU"
    "$PY" -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1; } | sha256sum | cut -d' ' -f1
}
LIBRARY="hawk_kernels/_C$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))' 2> /dev/null)"
built_key() {  # the sources' key and the built library's own hash (another build of _C in between: not up to date)
  echo "$1 $(cat "$LIBRARY" 2> /dev/null | sha256sum | cut -d' ' -f1)"
}
library_runs_here() {  # on a GPU host, _C (built here, or carried from a PREBUILD) loads and holds the CUDA kernels
  [ "$GPU" -eq 0 ] || "$PY" -c '
import hawk_kernels._C
from hawk_kernels.ops import _backend, _library
assert all(_library.has_kernel(op, "CUDA") for op in _backend.OPS)' > "$WORK/carried.log" 2>&1
}
KEY="$(build_key)"
if [ -f "$BUILD_STAMP" ] && [ "$(cat "$BUILD_STAMP")" = "$(built_key "$KEY")" ] && [ "${PREBUILD:-0}" != 1 ] \
    && library_runs_here; then
  say "--- build: up to date (sources, torch and CUDA choice unchanged since the build that wrote $BUILD_STAMP)"
  record build passed 0 0 "" any "up to date: $BUILD_STAMP matches" ""
else
  if [ "$GPU" -eq 1 ]; then
    step build 420 gpu env MAX_JOBS="${MAX_JOBS:-16}" HAWK_BUILD_CUDA=1 "$PY" setup.py build_ext --inplace
  else
    step build 420 any env MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" setup.py build_ext --inplace
  fi
  if [ $? -eq 0 ]; then
    mkdir -p build && built_key "$KEY" > "$BUILD_STAMP" || say "gpu_check: could not write $BUILD_STAMP"
  else
    BUILD_OK=0
  fi
fi
if [ "${PREBUILD:-0}" = 1 ]; then
  [ "$BUILD_OK" -eq 1 ] || { say "gpu_check: PREBUILD failed (the build's log above)"; exit 1; }
  say "gpu_check: PREBUILD done: carry $LIBRARY and $BUILD_STAMP to the GPU host, whose build step"
  say "           then reads 'up to date' if its torch is $("$PY" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if [ "$BUILD_OK" -eq 1 ]; then
  "$PY" -c 'import hawk_kernels, hawk_kernels._C as c; print("gpu_check: imports", hawk_kernels.__file__, "and", c.__file__)' \
    2>&1 | tee -a "$LOG"
  "$PY" -m hawk_kernels info >> "$WORK/env.txt" 2>&1  # the kernel each op runs per device, and why (hawk info)
fi

# --- 1b. canary: every hawk op once on CUDA, small inputs (scripts/sanitize_ops.py, the sanitizers' program). The
# reworked CUDA kernels have never run on a GPU: if this first call fails, every later step runs with
# HAWK_KERNELS_SKIP=cuda (the Triton kernels), so the step timings still come back (the CUDA tests run without it:
# their failures are the kernels'); if it hangs, the steps that call the CUDA kernels by name (CUDA tests, kernel
# benchmarks, sanitizers) would hang too and are skipped.
CANARY_HUNG=0
if [ "$GPU" -eq 1 ] && [ "$BUILD_OK" -eq 1 ]; then
  if ! step canary 60 gpu "$PY" scripts/sanitize_ops.py; then
    export HAWK_KERNELS_SKIP=cuda
    [ "$(tail -n 1 "$STEPS" | cut -f2)" = timed_out ] && CANARY_HUNG=1
    say "gpu_check: the CUDA kernels' first call failed$([ "$CANARY_HUNG" -eq 1 ] && echo ' (hung)'): later steps" \
        "run with HAWK_KERNELS_SKIP=cuda (Triton kernels)"
  fi
elif [ "$GPU" -eq 0 ]; then
  skip_gpu canary "the first call of the CUDA kernels"
fi
hung() {  # name: record a step skipped because the canary hung
  say "--- $1: SKIPPED: the CUDA kernels' first call hung (canary); this step calls them by name"
  record "$1" skipped "" 0 "" gpu "the canary hung: the CUDA kernels would hang here too" ""
}

# --- 2. CUDA tests
if [ "$GPU" -eq 1 ] && [ "$CANARY_HUNG" -eq 1 ]; then
  hung tests_cuda
elif [ "$GPU" -eq 1 ]; then
  # the compiled step's CUDA tests (each compiles a model: tens of seconds) run after the 7B step, below
  step tests_cuda 200 gpu env -u HAWK_KERNELS_SKIP "$PY" -m pytest tests -m cuda --ignore=tests/test_compiled.py -q \
    -rfEs -p no:cacheprovider --junitxml="$WORK/tests_cuda.xml"
else
  skip_gpu tests_cuda "pytest tests -m cuda: every test there skips without one"
fi

# --- 3. the compiled 7B step against the floor (issue 20's targets): right after the tests, so the deadline
# cannot squeeze it out. Every decoder compiles (a minute or more per tree size and mode at the 7B shape); each row
# is printed as a JSON line as soon as it is timed (with its kernels by time), so a timeout keeps the rows done.
if [ "$GPU" -eq 1 ]; then
  step e2e_7b 330 gpu "$PY" benchmarks/e2e.py --out "$WORK" --skip-bundled --graphs on --trees ${E2E_TREES:-32 64} \
    --tree-modes hawk hawk+jacobi --attention sdpa --name 7b --profile-steps 3
else
  step e2e_7b 180 cpu-smoke env OMP_NUM_THREADS=1 "$PY" benchmarks/e2e.py --smoke --out "$WORK"
fi

# --- 3b. kernel benchmarks
BENCH=(benchmarks/bench_accept_reject.py benchmarks/bench_tree_mask.py benchmarks/bench_draft_heads.py
       benchmarks/bench_philox.py benchmarks/bench_attention.py)  # attention last: its flex rows compile first
if [ "$GPU" -eq 1 ] && [ "$CANARY_HUNG" -eq 1 ]; then
  hung kernel_bench
elif [ "$GPU" -eq 1 ]; then
  # after a failed canary, not the CUDA kernels' rows: an illegal address there is sticky and would fail every later
  # row of the process (the Triton and attention rows too)
  BENCH_FILTER=()
  [ "${HAWK_KERNELS_SKIP:-}" = cuda ] && BENCH_FILTER=(-k "not cuda-cuda")
  step kernel_bench 240 gpu "$PY" -m pytest "${BENCH[@]}" "${BENCH_FILTER[@]}" -q -p no:cacheprovider \
    --benchmark-json="$WORK/kernels_bench.json" --junitxml="$WORK/kernels_bench.xml"
else
  step kernel_bench 120 cpu-smoke env OMP_NUM_THREADS=1 "$PY" -m pytest "${BENCH[@]}" -q -p no:cacheprovider --quick \
    --benchmark-json="$WORK/kernels_bench_cpu.json"
fi

# --- 4. compute-sanitizer: memory and races first (the new accept_reject and draft_heads kernels)
SANITIZER="$(command -v compute-sanitizer || true)"
[ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && SANITIZER=/usr/local/cuda/bin/compute-sanitizer
# --- 3c. the compiled step's CUDA tests (after the 7B step: they compile models, and e2e_7b's rows come first)
if [ "$GPU" -eq 1 ] && [ "$CANARY_HUNG" -eq 1 ]; then
  hung tests_cuda_compiled
elif [ "$GPU" -eq 1 ]; then
  step tests_cuda_compiled 180 gpu env -u HAWK_KERNELS_SKIP "$PY" -m pytest tests/test_compiled.py -m cuda -q -rfEs \
    -p no:cacheprovider --junitxml="$WORK/tests_cuda_compiled.xml"
else
  skip_gpu tests_cuda_compiled "pytest tests/test_compiled.py -m cuda: every test there skips without one"
fi

sanitize() {  # TOOL...: compute-sanitizer over scripts/sanitize_ops.py, one step per tool
  local tool
  for tool in "$@"; do
    if [ "$GPU" -eq 0 ]; then
      skip_gpu "sanitizer_$tool" "compute-sanitizer checks CUDA kernels"
    elif [ "$CANARY_HUNG" -eq 1 ]; then
      hung "sanitizer_$tool"
    elif [ -z "$SANITIZER" ]; then
      say "--- sanitizer_$tool: SKIPPED: compute-sanitizer not found"
      record "sanitizer_$tool" skipped "" 0 "" gpu "compute-sanitizer not found" ""
    else
      step "sanitizer_$tool" 100 gpu "$SANITIZER" --tool "$tool" --error-exitcode 9 "$PY" scripts/sanitize_ops.py
    fi
  done
}
sanitize memcheck racecheck

# --- 5. end to end: flex, then the bundled model (the 7B step ran as step 3)
if [ "$GPU" -eq 1 ]; then
  step e2e_flex 150 gpu "$PY" benchmarks/e2e.py --out "$WORK" --skip-bundled --graphs on --trees 32 \
    --tree-modes hawk+jacobi --attention flex_attention --name flex
  step e2e_bundled 120 gpu "$PY" benchmarks/e2e.py --out "$WORK" --skip-7b --images "${E2E_IMAGES:-5}" \
    --bundled-modes ar hawk hawk+jacobi --name bundled
else
  skip_gpu e2e_flex "flex_attention runs on CUDA only"
  skip_gpu e2e_bundled "the smoke run above covers the bundled section"
fi

# --- 6. kernels per step, eager vs compiled (issue 20, item 1)
if [ "$GPU" -eq 1 ]; then
  step step_ops 90 gpu "$PY" benchmarks/step_ops.py --device cuda --out "$WORK"
else
  step step_ops 60 cpu-smoke env OMP_NUM_THREADS=1 "$PY" benchmarks/step_ops.py --smoke --out "$WORK"
fi

# --- 7. the released shapes (issue 22): prompt -> PNG, seconds and peak memory per image, batch-16 memory
if [ "$GPU" -eq 1 ]; then
  # its own budget: the step's limit (the time left, at most 420 s) less 30 s, so that it skips what would not fit and
  # writes its JSON before the limit's SIGTERM (which it also survives, writing what it has)
  left=$((DEADLINE_S - RESERVE_S - (SECONDS - START)))
  left=$(( (left < 420 ? left : 420) - 30 ))
  step real_shapes 420 gpu "$PY" benchmarks/real_shapes.py --full --out "$WORK" --budget-s "$(( left > 30 ? left : 30 ))" \
    --memory-batch 16 --memory-steps 4
else
  step real_shapes 120 cpu-smoke env OMP_NUM_THREADS=1 "$PY" benchmarks/real_shapes.py --smoke --out "$WORK"
fi

# --- 8. never slower than AR on the GPU (issue 20, item 4)
if [ "$GPU" -eq 1 ]; then
  step tree_size 180 gpu "$PY" benchmarks/tree_size.py --device cuda --out "$WORK" --batches 1 16 \
    --modes hawk hawk+jacobi --repeats 2 --compile off
else
  step tree_size 60 cpu-smoke env OMP_NUM_THREADS=1 "$PY" benchmarks/tree_size.py --smoke --out "$WORK"
fi
if [ "$GPU" -eq 1 ]; then  # a model nobody calibrated: every real model's default (jacobi) without heads
  step tree_size_uncalibrated 120 gpu "$PY" benchmarks/tree_size.py --device cuda --out "$WORK" --batches 1 16 \
    --modes jacobi --repeats 2 --compile off --uncalibrated
else
  step tree_size_uncalibrated 60 cpu-smoke env OMP_NUM_THREADS=1 "$PY" benchmarks/tree_size.py --smoke --out "$WORK" \
    --uncalibrated
fi

# --- 8b. compute-sanitizer: the other two tools
sanitize synccheck initcheck

# --- 9. head training at the 7B shape
if [ "$GPU" -eq 1 ]; then
  step heads_training 240 gpu "$PY" benchmarks/heads_training.py --out "$WORK"
else
  step heads_training 120 cpu-smoke env OMP_NUM_THREADS=1 "$PY" benchmarks/heads_training.py --tiny --repeats 2 \
    --out "$WORK"
fi

# --- summary.json, results.tar.gz, e2e.png
"$PY" - "$WORK" "$OUT" "$GPU" "$DEADLINE_S" "$((SECONDS - START))" <<'PY' 2>&1 | tee -a "$LOG"
import datetime, glob, json, os, platform, subprocess, sys
import xml.etree.ElementTree as ET

work, out, gpu, deadline, elapsed = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
keys = ("name", "status", "rc", "seconds", "timeout_s", "form", "reason", "command")
steps = []
for line in open(os.path.join(work, "steps.tsv")):
    row = dict(zip(keys, line.rstrip("\n").split("\t")))
    for k in ("rc", "seconds", "timeout_s"):
        row[k] = int(row[k]) if row.get(k) else None
    steps.append(row)
info = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(), command=" ".join([*(f"{k}={os.environ[k]!r}" for k in ("GPU_STEPS", "DEADLINE_S") if os.environ.get(k)),
                              "bash scripts/gpu_check.sh"]),
            host=platform.node(), gpu=gpu, deadline_s=deadline, elapsed_s=elapsed,
            git_commit=subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
            git_dirty=bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()))
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, python=platform.python_version(),
                device=torch.cuda.get_device_name(0) if gpu else "cpu (no CUDA device)")
    if gpu:
        info["capability"] = list(torch.cuda.get_device_capability(0))
        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
except Exception as exc:
    info["torch"] = f"not importable: {exc}"
for name in ("triton", "transformers"):
    try:
        info[name] = __import__(name).__version__
    except Exception:
        info[name] = None
info["steps"] = steps
info["kernels_skipped"] = os.environ.get("HAWK_KERNELS_SKIP")  # set by the canary: the CUDA kernels failed


def junit(path):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    count = lambda k: sum(int(s.get(k, 0)) for s in suites)
    failing = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    return dict(tests=count("tests"), failures=count("failures"), errors=count("errors"), skipped=count("skipped"),
                failing=failing[:50])


for name in ("tests_cuda", "tests_cuda_compiled", "kernels_bench"):
    path = os.path.join(work, f"{name}.xml")
    if os.path.exists(path):
        try:
            info[name] = junit(path)
        except Exception as exc:
            info[name] = f"unreadable JUnit XML: {exc}"
headline = {"bundled_ms_per_image": {}, "bundled_fallbacks": {}, "ms_per_step": {}}
for path in sorted(glob.glob(os.path.join(work, "e2e_*.json"))):  # e2e_7b, e2e_flex, e2e_bundled: merged
    report = json.load(open(path))
    headline["copy_bandwidth_TBps"] = report["bandwidth"]["copy_bytes_per_s"] / 1e12
    headline["bundled_ms_per_image"].update({f"{r['mode']}{' graphed' if r['cuda_graph_used'] else ''}":
                                             round(r["ms_per_image"], 1) for r in report["bundled"]})
    headline["bundled_fallbacks"].update({r["mode"]: r["fallbacks"] for r in report["bundled"] if r.get("fallbacks")})
    if report.get("seven_b"):
        big = report["seven_b"]
        headline["big_model"] = big["label"]
        headline["floor_ms"] = round(big["floor_ms"], 3)
        label = lambda r: (f"{'graphed' if r['cuda_graph'] else 'eager'}{' compiled' if r.get('compiled') else ''}"
                           f" {r.get('attention', 'sdpa')} {r['mode']}-{r['num_nodes']}")
        timed = [r for r in big["steps"] if "ms_per_step" in r]
        headline["ms_per_step"].update({label(r): round(r["ms_per_step"], 3) for r in timed})
        headline.setdefault("compile_s", {}).update({label(r): round(r.get("compile_s", 0.0), 1) for r in timed})
        headline.setdefault("compile_failures", {}).update({label(r): r["compile_failure"] for r in timed
                                                            if r.get("compile_failure")})
        headline.setdefault("failed_rows", {}).update({f"{r['attention']} {r['mode']}-{r['num_nodes']}": r["failed"]
                                                       for r in big["steps"] if "failed" in r})
        if "transformers_generate_ms_per_token" in big:
            headline["transformers_generate_ms_per_token"] = round(big["transformers_generate_ms_per_token"], 2)
for path in glob.glob(os.path.join(work, "heads_training_*.json")):
    report = json.load(open(path))
    headline["heads_training"] = dict(step_sequences_per_s=report["step_sequences_per_s"],
                                      peak_device_gib=report["peak_device_gib"],
                                      hours_one_gpu=report["projection"]["hours_one_gpu"])
info["headline"] = headline
try:  # issue 20's and 22's targets, judged from this run's outputs (scripts/targets.py)
    sys.path.insert(0, os.path.join(os.getcwd(), "scripts"))
    import targets
    info["targets"] = targets.check(work)
    target_table = targets.table(info["targets"])
except Exception as exc:  # the summary must still be written
    info["targets"], target_table = f"scripts/targets.py failed: {type(exc).__name__}: {exc}", None
bad = [s["name"] for s in steps if s["status"] in ("failed", "timed_out")]
skipped_time = [s["name"] for s in steps if s["status"] == "skipped" and "no time left" in s["reason"]]
info["status"] = "fail" if bad else "pass"
info["failed_steps"], info["skipped_for_time"] = bad, skipped_time
info["needs_a_gpu_skipped"] = [s["name"] for s in steps if s["reason"].startswith("needs a GPU")]
json.dump(info, open(os.path.join(out, "summary.json"), "w"), indent=2)
# e2e's plot beside the summary; everything else in the tarball
for png in glob.glob(os.path.join(work, "e2e_*.png"))[:1]:
    with open(png, "rb") as src, open(os.path.join(out, "e2e.png"), "wb") as dst:
        dst.write(src.read())
files = sorted(os.path.relpath(p, work) for p in glob.glob(os.path.join(work, "*")) if os.path.isfile(p))
subprocess.run(["tar", "-czf", os.path.join(out, "results.tar.gz"), "-C", work, *files], check=True)
print("gpu_check summary:")
for s in steps:
    print(f"  {s['name']:<22} {s['status']:<10} {s['seconds'] or 0:>4} s  {s['form']:<9} {s['reason']}")
for name in ("tests_cuda", "tests_cuda_compiled"):
    if isinstance(info.get(name), dict):
        t = info[name]
        print(f"  {name}: {t['tests']} tests, {t['failures']} failed, {t['errors']} errors, {t['skipped']} skipped")
        for case in t["failing"][:20]:
            print("    FAILED", case)
print(target_table if target_table else f"  targets: {info['targets']}")
print(f"  status: {info['status']} in {elapsed} s of {deadline} s"
      + (f"; skipped for time: {', '.join(skipped_time)}" if skipped_time else "")
      + ("" if gpu else f"; needs a GPU (skipped): {', '.join(info['needs_a_gpu_skipped'])}"))
print(f"  results: {out}/summary.json, gpu_check.log, results.tar.gz ({len(files)} files)"
      + (", e2e.png" if os.path.exists(os.path.join(out, "e2e.png")) else ""))
PY
exit "$FAILED"
