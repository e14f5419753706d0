// hawk::draft_heads on CPU: the same batching as the CUDA path, with ATen matmuls in float32 (float64 for
// float64 inputs). Layer 0 of every head reads the same hidden state, so it is ONE [T, d] x [d, H*d] GEMM.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../op_args.h"

namespace hawk {
namespace {

at::Tensor draft_heads_cpu(const at::Tensor& hidden, const at::Tensor& res_weight, const at::Tensor& res_bias,
                           const at::Tensor& proj_weight, double inv_temperature) {
  TORCH_CHECK(hidden.device().is_cpu(), "hidden: expected a CPU tensor, got device ", hidden.device());
  const DraftHeadsSizes sizes = check_draft_heads_args(hidden, res_weight, res_bias, proj_weight, inv_temperature);
  const int64_t tokens = sizes.tokens, width = sizes.width, heads = sizes.heads, layers = sizes.layers;
  const auto compute = hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto z0 = hidden.to(compute);
  const auto weight = res_weight.to(compute);
  const auto bias = res_bias.to(compute);
  at::Tensor z;  // [H, T, d]
  if (layers == 0) {
    z = z0.unsqueeze(0).expand({heads, tokens, width});
  } else {
    const auto stacked = weight.select(1, 0).reshape({heads * width, width});  // [H*d, d]
    const auto acc = at::addmm(bias.select(1, 0).reshape({heads * width}), z0, stacked.t());  // [T, H*d]
    z = z0.unsqueeze(0) + at::silu(acc.view({tokens, heads, width}).permute({1, 0, 2}));
    for (int64_t layer = 1; layer < layers; ++layer) {
      const auto acc_l = at::baddbmm(bias.select(1, layer).unsqueeze(1), z, weight.select(1, layer).transpose(1, 2));
      z = z + at::silu(acc_l);
    }
  }
  const auto proj = proj_weight.to(compute);
  const int64_t vocab = sizes.vocab;
  at::Tensor logits;  // [H, T, V]
  if (proj.size(0) == 1) {  // shared lm_head: one GEMM over all heads' rows
    logits = at::mm(z.reshape({heads * tokens, width}), proj[0].t()).view({heads, tokens, vocab});
  } else {
    logits = at::bmm(z.contiguous(), proj.transpose(1, 2));
  }
  return at::log_softmax(logits * inv_temperature, -1).permute({1, 0, 2}).contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("draft_heads", &draft_heads_cpu); }

}  // namespace hawk
