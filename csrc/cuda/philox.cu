// hawk::philox_uniforms on CUDA: checks, current stream, one launch of include/hawk/philox.cuh (rows x counter
// blocks; one row when seed and offset are one each). The kernel reads seed(s) and offset(s) from device memory
// (no host sync), so a captured CUDA graph that also advances the offset tensor replays with fresh numbers.
// Spec: hawk_kernels/ops/reference/philox.py.
#include <torch/library.h>

#include "dispatch.h"
#include "hawk/philox.cuh"
#include "../op_args.h"

namespace hawk {
namespace {

at::Tensor philox_uniforms_cuda(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                                int64_t stream) {
  check_cuda(seed, "seed");
  const PhiloxSizes sizes = check_philox_args(seed, offset, shape, stream);
  const c10::cuda::CUDAGuard guard(seed.device());
  auto out = at::empty(shape, seed.options().dtype(at::kFloat));
  if (sizes.numel == 0) return out;
  PhiloxArgs args;
  args.seed = seed.data_ptr<int64_t>();
  args.seed_stride = sizes.seed_stride;  // per-row keys and offsets may be strided views
  args.offset = offset.data_ptr<int64_t>();
  args.offset_stride = sizes.offset_stride;
  args.out = out.data_ptr<float>();
  args.rows = sizes.rows;
  args.row_numel = sizes.row_numel;
  args.stream = static_cast<uint32_t>(stream);
  check_launch(launch_philox_uniforms(args, c10::cuda::getCurrentCUDAStream()), "philox_uniforms");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("philox_uniforms", &philox_uniforms_cuda); }

}  // namespace hawk
