// hawk::philox_uniforms on CUDA: checks, current stream, one launch of include/hawk/philox.cuh. The kernel
// reads seed and offset from device memory (no host sync), so a captured CUDA graph that also advances the
// offset tensor replays with fresh numbers. Spec: hawk_kernels/ops/reference/philox.py.
#include <torch/library.h>

#include "dispatch.h"
#include "hawk/philox.cuh"

namespace hawk {
namespace {

at::Tensor philox_uniforms_cuda(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                                int64_t stream) {
  check_cuda(seed, "seed");
  TORCH_CHECK(seed.scalar_type() == at::kLong && seed.dim() <= 1 && seed.numel() == 1,
              "seed: expected an int64 tensor of shape () or (1,), got ", seed.scalar_type(), " ", seed.sizes());
  TORCH_CHECK(offset.scalar_type() == at::kLong && offset.dim() <= 1 && offset.numel() == 1,
              "offset: expected an int64 tensor of shape () or (1,), got ", offset.scalar_type(), " ",
              offset.sizes());
  TORCH_CHECK(offset.device() == seed.device(), "offset: expected device ", seed.device(), ", got ",
              offset.device());
  TORCH_CHECK(stream >= 0 && stream < (int64_t{1} << 32), "stream: expected 0 <= stream < 2**32, got ", stream);
  bool empty = false;
  for (const int64_t size : shape) {
    TORCH_CHECK(size >= 0, "shape: expected non-negative sizes, got ", shape);
    empty = empty || size == 0;
  }
  int64_t numel = empty ? 0 : 1;
  for (const int64_t size : shape) {
    if (empty) break;
    TORCH_CHECK(size <= philox::kMaxNumel / numel, "shape: at most 2**34 elements, got shape ", shape);
    numel *= size;
  }
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
