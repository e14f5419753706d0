#!/usr/bin/env bash
# CUDA compile check, no GPU needed: every unit is compiled for sm_90 (H100) and any error fails.
#   1. csrc/include/hawk/*.cuh (torch-free device code): a generated harness per header instantiates every
#      launch template for float, bf16 and fp16.
#   2. csrc/cuda/*.cu (torch-aware): compiled against the installed torch's headers. A CPU-only torch wheel
#      ships the c10/cuda headers but not the one CMake generates (c10/cuda/impl/cuda_cmake_macros.h); a stub
#      supplies it. Object files only: nothing is linked.
#   3. The Triton kernels: compiled ahead of time to sm_90 cubins (python -m hawk_kernels.ops.triton.compile_check).
# Exits 0 with a message when nvcc is absent. JOBS (default 2) compiles run in parallel; ~2-3 min on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
NVCC="${NVCC:-$(command -v nvcc || true)}"
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -z "$NVCC" ]; then
  echo "compile_cuda: nvcc not found: CUDA compile check SKIPPED (install the CUDA toolkit to run it)"
  exit 0
fi
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FLAGS=(-std=c++17 -O2 -gencode arch=compute_90,code=sm_90 -Icsrc/include -Icsrc/cuda)
echo "compile_cuda: $("$NVCC" --version | tail -1)"

# --- 1. torch-free harnesses
cat > "$TMP/harness_accept_reject.cu" <<'CU'
#include "hawk/accept_reject.cuh"
template cudaError_t hawk::launch_accept_reject<float>(const hawk::AcceptRejectArgs<float>&, int, cudaStream_t);
template cudaError_t hawk::launch_accept_reject<__nv_bfloat16>(const hawk::AcceptRejectArgs<__nv_bfloat16>&, int, cudaStream_t);
template cudaError_t hawk::launch_accept_reject<__half>(const hawk::AcceptRejectArgs<__half>&, int, cudaStream_t);
CU
cat > "$TMP/harness_tree_mask.cu" <<'CU'
#include "hawk/tree_mask.cuh"
cudaError_t harness_tree_mask(const hawk::TreeMaskArgs& a, cudaStream_t s) { return hawk::launch_tree_mask(a, s); }
CU
cat > "$TMP/harness_draft_heads.cu" <<'CU'
#include "hawk/draft_heads.cuh"
#define HAWK_INSTANTIATE(T)                                                                                 \
  template cudaError_t hawk::launch_resblock_epilogue<T>(const T*, const T*, const T*, T*,                  \
                                                         const hawk::ResblockShape&, cudaStream_t);        \
  template cudaError_t hawk::launch_log_softmax_epilogue<T>(const T*, float*, int, int, int, float, cudaStream_t);
#define HAWK_INSTANTIATE_SKINNY(T)                                                                          \
  template cudaError_t hawk::launch_skinny_resblock<T>(const hawk::SkinnyOperands<T>&, int, const T*, int64_t, \
                                                       T*, cudaStream_t);                                  \
  template cudaError_t hawk::launch_skinny_projection<T>(const hawk::SkinnyOperands<T>&, int,                 \
                                                         const hawk::SkinnyLogits&, cudaStream_t);
HAWK_INSTANTIATE(float)
HAWK_INSTANTIATE(__nv_bfloat16)
HAWK_INSTANTIATE(__half)
HAWK_INSTANTIATE_SKINNY(__nv_bfloat16)  // the small-T path: bf16 / fp16 only (mma.sync)
HAWK_INSTANTIATE_SKINNY(__half)
CU
cat > "$TMP/harness_philox.cu" <<'CU'
#include "hawk/philox.cuh"
cudaError_t harness_philox(const hawk::PhiloxArgs& a, cudaStream_t s) { return hawk::launch_philox_uniforms(a, s); }
CU
for header in csrc/include/hawk/*.cuh; do
  name="$(basename "$header" .cuh)"
  [ "$name" = common ] && continue  # included (and so compiled) by every other header
  [ -f "$TMP/harness_$name.cu" ] || { echo "compile_cuda: no harness for $header: add one to .ci/compile_cuda.sh"; exit 1; }
done

UNITS=("$TMP"/harness_*.cu)
TORCH_INCLUDES=()
if TORCH_INC="$("$PYTHON" -c 'import torch.utils.cpp_extension as c; print("\n".join(c.include_paths()))' 2>/dev/null)"; then
  while IFS= read -r dir; do TORCH_INCLUDES+=("-I$dir"); done <<< "$TORCH_INC"
  if [ ! -f "$(head -1 <<< "$TORCH_INC")/c10/cuda/impl/cuda_cmake_macros.h" ]; then
    mkdir -p "$TMP/stub/c10/cuda/impl"
    printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$TMP/stub/c10/cuda/impl/cuda_cmake_macros.h"
    TORCH_INCLUDES+=("-I$TMP/stub")
  fi
  UNITS+=(csrc/cuda/*.cu)
else
  echo "compile_cuda: torch not importable: csrc/cuda/*.cu SKIPPED (only the torch-free headers are checked)"
fi

compile() {  # unit -> writes $TMP/<n>.status and .log
  local unit="$1" tag="$2" start=$SECONDS
  if "$NVCC" "${FLAGS[@]}" "${TORCH_INCLUDES[@]}" -c "$unit" -o "$TMP/$tag.o" > "$TMP/$tag.log" 2>&1; then
    echo "ok    $unit ($((SECONDS - start)) s)"
  else
    echo "FAIL  $unit"; grep -E "error|Error" "$TMP/$tag.log" | head -20; echo 1 > "$TMP/$tag.failed"
  fi
}
i=0
for unit in "${UNITS[@]}"; do
  i=$((i + 1))
  compile "$unit" "unit$i" &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
done
wait
failed=$(ls "$TMP"/*.failed 2>/dev/null | wc -l)

# --- 3. Triton kernels
if "$PYTHON" -c 'import triton, hawk_kernels' 2>/dev/null; then
  if ! env -u TRITON_INTERPRET "$PYTHON" -m hawk_kernels.ops.triton.compile_check --arch 90 2>&1 | grep -v -i warn; then
    echo "FAIL  Triton kernels"; failed=$((failed + 1))
  fi
else
  echo "compile_cuda: triton or hawk_kernels not importable: Triton compile check SKIPPED"
fi

if [ "$failed" -ne 0 ]; then echo "compile_cuda: $failed unit(s) FAILED"; exit 1; fi
echo "compile_cuda: all ${#UNITS[@]} CUDA units and the Triton kernels compile for sm_90"
