// hawk::philox_uniforms on CPU: the shared Philox4x32-10 of include/hawk/philox.cuh, one counter block (four
// uniforms) per iteration, parallel over rows x blocks (one row when seed and offset are one each; a per-row
// seed or offset: row r drawn with its own seed and offset, blocks counted within the row).
// Spec: hawk_kernels/ops/reference/philox.py.
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
  const PhiloxSizes sizes = check_philox_args(seed, offset, shape, stream);
  auto out = at::empty(shape, seed.options().dtype(at::kFloat));
  if (sizes.numel == 0) return out;
  const int64_t* seeds = seed.data_ptr<int64_t>();
  const int64_t* offsets = offset.data_ptr<int64_t>();
  const uint32_t lane_stream = static_cast<uint32_t>(stream);
  float* o = out.data_ptr<float>();
  const int64_t row_numel = sizes.row_numel;
  const int64_t row_blocks = (row_numel + 3) / 4;
  at::parallel_for(0, sizes.rows * row_blocks, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t row = t / row_blocks, j = t - row * row_blocks;
      const uint64_t key = static_cast<uint64_t>(seeds[row * sizes.seed_stride]);
      const uint64_t ctr = static_cast<uint64_t>(offsets[row * sizes.offset_stride]);
      const philox::Block x = philox::uniform_bits(key, ctr, lane_stream, static_cast<uint32_t>(j));
      const int64_t first = 4 * j, lanes = row_numel - first < 4 ? row_numel - first : 4;
      float* row_out = o + row * row_numel;
      for (int64_t lane = 0; lane < lanes; ++lane) row_out[first + lane] = philox::to_uniform(x.x[lane]);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("philox_uniforms", &philox_uniforms_cpu); }

}  // namespace hawk
