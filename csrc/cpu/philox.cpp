// hawk::philox_uniforms on CPU: the shared Philox4x32-10 of include/hawk/philox.cuh, one counter block (four
// uniforms) per iteration, parallel over blocks. Spec: hawk_kernels/ops/reference/philox.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "hawk/philox.cuh"

namespace hawk {
namespace {

at::Tensor philox_uniforms_cpu(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                               int64_t stream) {
  TORCH_CHECK(seed.device().is_cpu(), "seed: expected a CPU tensor, got device ", seed.device());
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
