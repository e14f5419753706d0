// hawk::philox_uniforms on CPU: the shared Philox4x32-10 of include/hawk/philox.cuh, one counter block (four
// uniforms) per iteration, parallel over blocks. Spec: hawk_kernels/ops/reference/philox.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "hawk/philox.cuh"
#include "../op_args.h"

namespace hawk {
namespace {

at::Tensor philox_uniforms_cpu(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                               int64_t stream) {
  TORCH_CHECK(seed.device().is_cpu(), "seed: expected a CPU tensor, got device ", seed.device());
  const int64_t numel = check_philox_args(seed, offset, shape, stream);
  auto out = at::empty(shape, seed.options().dtype(at::kFloat));
  if (numel == 0) return out;
  const uint64_t key = static_cast<uint64_t>(*seed.data_ptr<int64_t>());
  const uint64_t ctr = static_cast<uint64_t>(*offset.data_ptr<int64_t>());
  const uint32_t lane_stream = static_cast<uint32_t>(stream);
  float* o = out.data_ptr<float>();
  const int64_t num_blocks = (numel + 3) / 4;
  at::parallel_for(0, num_blocks, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const philox::Block x = philox::uniform_bits(key, ctr, lane_stream, static_cast<uint32_t>(j));
      const int64_t first = 4 * j, lanes = numel - first < 4 ? numel - first : 4;
      for (int64_t lane = 0; lane < lanes; ++lane) o[first + lane] = philox::to_uniform(x.x[lane]);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("philox_uniforms", &philox_uniforms_cpu); }

}  // namespace hawk
