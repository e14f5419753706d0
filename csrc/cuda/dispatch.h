// Torch-side helpers shared by csrc/cuda/*.cu: input checks and the fp32 / bf16 / fp16 switch.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace hawk {

inline void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, ": expected a CUDA tensor, got device ", t.device());
}

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "hawk::", op, " launch failed: ", cudaGetErrorString(err));
}

// Calls fn with a null pointer of the CUDA element type of `dtype` (float, __nv_bfloat16, __half).
template <typename Fn>
void dispatch_float(at::ScalarType dtype, const char* name, Fn&& fn) {
  switch (dtype) {
    case at::kFloat: fn(static_cast<float*>(nullptr)); break;
    case at::kBFloat16: fn(static_cast<__nv_bfloat16*>(nullptr)); break;
    case at::kHalf: fn(static_cast<__half*>(nullptr)); break;
    default: TORCH_CHECK(false, name, ": expected float32, bfloat16 or float16 on CUDA, got ", dtype);
  }
}

template <typename T>
const T* data(const at::Tensor& t) { return reinterpret_cast<const T*>(t.data_ptr()); }
template <typename T>
T* mutable_data(at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }

}  // namespace hawk
