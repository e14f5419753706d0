// hawk::draft_heads on CUDA. GEMMs go to cuBLAS through ATen: layer 0 of all heads is ONE
// [T, d] x [d, H*d] GEMM (every head reads the same hidden state), later layers one batched GEMM over heads,
// the projection one [H*T, d] x [d, V] GEMM for a shared lm_head (a batched one otherwise). Our kernels
// (include/hawk/draft_heads.cuh) do the epilogues: bias + SiLU + residual for all heads in one launch, and
// temperature + log-softmax straight from the GEMM-dtype logits into the fp32 [T, H, V] output.
#include <ATen/ops/bmm.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include "../op_args.h"
#include "dispatch.h"
#include "hawk/draft_heads.cuh"

namespace hawk {
namespace {

at::Tensor draft_heads_cuda(const at::Tensor& hidden, const at::Tensor& res_weight, const at::Tensor& res_bias,
                            const at::Tensor& proj_weight, double inv_temperature) {
  check_cuda(hidden, "hidden");
  const DraftHeadsSizes sizes = check_draft_heads_args(hidden, res_weight, res_bias, proj_weight, inv_temperature);
  const int64_t tokens = sizes.tokens, width = sizes.width, heads = sizes.heads, layers = sizes.layers;
  const c10::cuda::CUDAGuard guard(hidden.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t vocab = sizes.vocab;
  const auto z0 = hidden.contiguous();
  const auto weight = res_weight.contiguous();
  const auto bias = res_bias.contiguous();
  auto logq = at::empty({tokens, heads, vocab}, hidden.options().dtype(at::kFloat));
  dispatch_float(hidden.scalar_type(), "hidden", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    at::Tensor z = z0.unsqueeze(0);  // [1 or H, T, d]
    for (int64_t layer = 0; layer < layers; ++layer) {
      const bool shared_input = layer == 0;
      const at::Tensor acc = shared_input
                                 ? at::mm(z0, weight.select(1, 0).reshape({heads * width, width}).t())  // [T, H*d]
                                 : at::bmm(z, weight.select(1, layer).transpose(1, 2));                 // [H, T, d]
      at::Tensor out = at::empty({heads, tokens, width}, z0.options());
      const ResblockShape shape{static_cast<int>(heads), static_cast<int>(tokens), static_cast<int>(width),
                                shared_input ? 0 : tokens * width, shared_input ? width : tokens * width,
                                shared_input ? heads * width : width, layers * width};
      check_launch(launch_resblock_epilogue(data<T>(z), data<T>(acc), data<T>(bias) + layer * width,
                                            mutable_data<T>(out), shape, stream),
                   "draft_heads (resblock)");
      z = out;
    }
    at::Tensor logits;  // [H, T, V] in the GEMM dtype
    if (proj_weight.size(0) == 1) {
      logits = at::mm(z.expand({heads, tokens, width}).reshape({heads * tokens, width}), proj_weight[0].t());
    } else {
      logits = at::bmm(z.expand({heads, tokens, width}), proj_weight.transpose(1, 2));
    }
    logits = logits.contiguous();
    check_launch(launch_log_softmax_epilogue(data<T>(logits), logq.data_ptr<float>(), static_cast<int>(tokens),
                                             static_cast<int>(heads), static_cast<int>(vocab),
                                             static_cast<float>(inv_temperature), stream),
                 "draft_heads (log-softmax)");
  });
  return logq;
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("draft_heads", &draft_heads_cuda); }

}  // namespace hawk
