#!/usr/bin/env bash
# The GPU machine's Python stack on this CPU box, before a GPU run spends its minutes finding what an older torch or
# transformers breaks: torch 2.11 and transformers 5.17 (../shared/measurements/*/env.txt) in a venv, the committed
# HEAD in a temporary worktree, built CPU-only and installed there, then the test suite (arguments are passed on to
# pytest; default: tests -k 'not triton'). Not in CI: the venv takes ~5 GB of downloads (PyPI's torch 2.11 is a CUDA
# build, which runs on the CPU).
# Triton 3.6 (the GPU machine's Triton): every kernel compiled for sm_90, then the Triton-interpreter tests in a step
# of their own, with numpy < 2.4 from a side folder (Triton 3.6's interpreter makes a conversion numpy 2.4 removed,
# and numpy < 2.4 warns of it from inside Triton: that one warning is let through). The main suite leaves them out.
#   bash scripts/gpu_stack_on_cpu.sh                      # the README's test set (the Triton ones apart)
#   bash scripts/gpu_stack_on_cpu.sh -m slow tests/test_compiled.py tests/test_pipelines.py -k compile
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/venv-gpu-stack}
# the GPU machine's Python is 3.12 (pytest turns our calls' DeprecationWarnings into errors, and 3.12 has its own)
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  for candidate in python3.12 "$(pyenv root 2>/dev/null)/versions/3.12"*/bin/python3.12; do
    if "$candidate" --version > /dev/null 2>&1; then PYTHON=$candidate; break; fi  # (a pyenv shim may not run)
  done
fi
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
TRANSFORMERS_VERSION=${TRANSFORMERS_VERSION:-5.17.0}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION" "transformers==$TRANSFORMERS_VERSION" numpy pillow safetensors \
  tqdm pytest pytest-benchmark ninja pybind11 setuptools wheel
TREE=$(mktemp -d /tmp/gpu-stack-XXXXXX)
trap 'git worktree remove --force "$TREE" > /dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$TREE" HEAD
cd "$TREE"
HAWK_BUILD_CUDA=0 MAX_JOBS=2 "$VENV/bin/pip" install -q --no-build-isolation --no-deps -e . > build.log 2>&1 \
  || { tail -20 build.log; exit 1; }
"$VENV/bin/python" -c "import platform, torch, transformers; print('python', platform.python_version(), 'torch', torch.__version__, 'transformers', transformers.__version__)"
# every Triton kernel compiled for sm_90 by the GPU machine's Triton (no GPU needed; the CI does it with its own)
env -u TRITON_INTERPRET "$VENV/bin/python" -m hawk_kernels.ops.triton.compile_check --arch 90 | tail -n 3
if [ "$#" -gt 0 ]; then
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider -rfE "$@"
  exit 0  # (a failure exits above: set -e; the trap removes the worktree either way)
fi
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -rfE tests -k 'not triton'
NUMPY_OLD="$VENV/numpy-below-2.4"
[ -d "$NUMPY_OLD/numpy" ] || "$VENV/bin/pip" install -q --target "$NUMPY_OLD" 'numpy<2.4'
echo "Triton-interpreter tests, Triton $("$VENV/bin/python" -c 'import triton; print(triton.__version__)'), numpy < 2.4:"
PYTHONPATH="$NUMPY_OLD" "$VENV/bin/python" -m pytest -q -p no:cacheprovider -rfE tests/ops -k triton \
  -W "ignore:Conversion of an array with ndim:DeprecationWarning"
