// hawk::philox_uniforms on CUDA: checks, current stream, one launch of include/hawk/philox.cuh. The kernel
// reads seed and offset from device memory (no host sync), so a captured CUDA graph that also advances the
// offset tensor replays with fresh numbers. Spec: hawk_kernels/ops/reference/philox.py.
#include <torch/library.h>

#include "dispatch.h"
#include "hawk/philox.cuh"
#include "../op_args.h"

namespace hawk {
namespace {

at::Tensor philox_uniforms_cuda(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                                int64_t stream) {
  check_cuda(seed, "seed");
  const int64_t numel = check_philox_args(seed, offset, shape, stream);
  const c10::cuda::CUDAGuard guard(seed.device());
  auto out = at::empty(shape, seed.options().dtype(at::kFloat));
  if (numel == 0) return out;
  PhiloxArgs args{seed.data_ptr<int64_t>(), offset.data_ptr<int64_t>(), out.data_ptr<float>(), numel,
                  static_cast<uint32_t>(stream)};
  check_launch(launch_philox_uniforms(args, c10::cuda::getCurrentCUDAStream()), "philox_uniforms");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("philox_uniforms", &philox_uniforms_cuda); }

}  // namespace hawk
