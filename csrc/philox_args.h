// Argument checks of hawk::philox_uniforms shared by the CPU and CUDA kernels (torch-side, unlike
// include/hawk/philox.cuh). Returns the number of elements to draw.
#pragma once
#include <ATen/ATen.h>

#include "hawk/philox.cuh"

namespace hawk {

inline int64_t check_philox_args(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                                 int64_t stream) {
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
  return numel;
}

}  // namespace hawk
