#!/usr/bin/env bash
# ONE script for a session that has an H100: build with the CUDA kernels, run the CUDA op and engine tests,
# compute-sanitizer on small accept_reject / tree_mask runs, the kernel benchmarks and the end-to-end
# benchmarks (bundled model eager vs CUDA graph, 7B-shaped steps, transformers generate) and the 7B-shaped
# head-training costs (benchmarks/heads_training.py); results under $OUT.
#   OUT=/path bash scripts/gpu_check.sh        (OUT defaults to benchmarks/results/gpu_check)
#   ONLY="build tests_cuda" OUT=... bash scripts/gpu_check.sh    (a subset; the build must be in every call)
# Every step runs even if an earlier one fails; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
status=0
step() {  # name, command...   (ONLY="build e2e" runs just those steps: one device call is at most 10 min)
  local name="$1"; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  echo "=== $name: $*" | tee -a "$LOG"
  local start=$SECONDS
  "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc in $((SECONDS - start)) s" | tee -a "$LOG"
  echo "$name $rc $((SECONDS - start))" >> "$OUT/steps.txt"
  [ "$rc" -eq 0 ] || status=1
}
: > "$OUT/steps.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

step build env MAX_JOBS="${MAX_JOBS:-8}" HAWK_BUILD_CUDA=1 pip install --no-build-isolation --no-deps -v .
step cuda_compile_check bash .ci/compile_cuda.sh
step tests_cuda python -m pytest tests/ops -m cuda -v -rs --junitxml="$OUT/tests_cuda.xml"
step tests_ops_all python -m pytest tests/ops -q -rs --junitxml="$OUT/tests_ops.xml"

cat > "$OUT/sanitize_small.py" <<'PY'
import torch
from hawk_kernels import ops
g = torch.Generator().manual_seed(0)
dev = torch.device("cuda")
parents = torch.tensor([-1, 0, 0, 0, 1, 1, 2, 4, 4, 7], device=dev)
B, N, V, Q = 2, parents.numel(), 1000, 3
base = torch.randn(B, 1, V, generator=g) * 2.5
target = (base + 0.6 * torch.randn(B, N, V, generator=g)).to(dev, torch.bfloat16)
draft = (base + 0.6 * torch.randn(B, Q, V, generator=g)).to(dev, torch.bfloat16)
tokens = torch.randint(-2, V + 2, (B, N), generator=g).to(dev)
source = torch.randint(-1, Q + 1, (B, N), generator=g).to(dev)
uniforms = torch.rand(B, N, 2, generator=g).to(dev)
for rule in ("rejection", "match"):
    print(rule, ops.accept_reject(target, draft, tokens, parents, source, uniforms, rule=rule, backend="cuda"))
print(ops.tree_mask(parents, 4, backend="cuda"))
hidden = torch.randn(3, 64, generator=g).to(dev, torch.bfloat16)
print(ops.draft_heads(hidden, torch.randn(4, 2, 64, 64).to(dev, torch.bfloat16) * 0.1,
                      torch.zeros(4, 2, 64).to(dev, torch.bfloat16),
                      torch.randn(1, 500, 64).to(dev, torch.bfloat16), 1.0, backend="cuda").shape)
torch.cuda.synchronize()
PY
if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck synccheck initcheck; do
    step "sanitizer_$tool" compute-sanitizer --tool "$tool" --error-exitcode 9 python "$OUT/sanitize_small.py"
  done
else
  echo "compute-sanitizer not found: sanitizer steps SKIPPED" | tee -a "$LOG"
  echo "sanitizer skipped -" >> "$OUT/steps.txt"
fi

step tests_engine_cuda python -m pytest tests/test_engine.py tests/test_decoder.py tests/test_step.py tests/test_pipelines.py -q -rs --junitxml="$OUT/tests_engine.xml"
step benchmarks python -m pytest benchmarks/bench_accept_reject.py benchmarks/bench_tree_mask.py \
  benchmarks/bench_draft_heads.py benchmarks/bench_philox.py -q --benchmark-json="$OUT/bench_kernels.json"
step e2e python benchmarks/e2e.py --out "$OUT" --images 10
step heads_train python benchmarks/heads_training.py --out "$OUT"

python - "$OUT" "$status" <<'PY'
import datetime, json, platform, subprocess, sys
out, status = sys.argv[1], int(sys.argv[2])
import torch
info = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    "command": "bash scripts/gpu_check.sh",
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
    "torch": torch.__version__, "torch_cuda": torch.version.cuda, "python": platform.python_version(),
    "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "steps": [dict(zip(("name", "rc", "seconds"), line.split())) for line in open(f"{out}/steps.txt")],
    "status": "pass" if status == 0 else "fail",
}
try:
    import triton
    info["triton"] = triton.__version__
except ImportError:
    info["triton"] = None
json.dump(info, open(f"{out}/gpu_check.json", "w"), indent=2)
print(json.dumps(info, indent=2))
PY
exit "$status"
