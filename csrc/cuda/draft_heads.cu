// hawk::draft_heads on CUDA. Two paths, chosen per GEMM:
//   small T (bf16/fp16, at most kSkinnyMaxRows = 32 rows, sm_80+; decode calls T = batch rows): our
//     weight-streaming kernels (include/hawk/draft_heads.cuh, "small-T path"): one launch per ResBlock layer
//     for all heads with bias + SiLU + residual fused, one projection launch writing fp32 scaled logits and
//     per-tile softmax statistics (the shared lm_head folds the heads into the rows: H*T rows, its weights
//     read once), one finishing launch subtracting log-sum-exp in place. No accumulator or logits round trip.
//   otherwise (fp32, more rows: training-size calls): cuBLAS through ATen: layer 0 of all heads is ONE
//     [T, d] x [d, H*d] GEMM (every head reads the same hidden state), later layers one batched GEMM over
//     heads, the projection one [H*T, d] x [d, V] GEMM for a shared lm_head (a batched one otherwise); our
//     epilogue kernels add bias + SiLU + residual and take temperature + log-softmax from the GEMM-dtype logits.
#include <ATen/ops/bmm.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <array>
#include <atomic>
#include <type_traits>

#include "../op_args.h"
#include "dispatch.h"
#include "hawk/draft_heads.cuh"

namespace hawk {
namespace {

// Compute capability major of `device` (the small-T path needs sm_80+ for mma.sync bf16), asked once per device.
int sm_major(c10::DeviceIndex device) {
  static std::array<std::atomic<int>, 64> cached{};  // 0: not asked yet
  if (device < 0 || device >= static_cast<int>(cached.size())) return 0;
  int major = cached[device].load(std::memory_order_relaxed);
  if (major == 0) {
    TORCH_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess,
                "hawk::draft_heads: cudaDeviceGetAttribute failed");
    cached[device].store(major, std::memory_order_relaxed);
  }
  return major;
}

struct Sizes {
  int64_t tokens, width, heads, layers, vocab;
};

// One ResBlock layer of all heads: z [1 or H, T, d] -> [H, T, d].
template <typename T>
at::Tensor resblock_layer(const at::Tensor& z, const at::Tensor& weight, const at::Tensor& bias, int64_t layer,
                          const Sizes& s, int major, cudaStream_t stream) {
  const int64_t tokens = s.tokens, width = s.width, heads = s.heads;
  const bool shared_input = layer == 0;  // every head reads the hidden state (z [1, T, d])
  at::Tensor out = at::empty({heads, tokens, width}, z.options());
  const SkinnyOperands<T> op{data<T>(z), data<T>(weight) + layer * width * width, shared_input ? 0 : tokens * width,
                             s.layers * width * width, static_cast<int>(tokens), static_cast<int>(width),
                             static_cast<int>(width)};
  if constexpr (sizeof(T) == 2) {
    if (skinny_supported(op, major)) {
      check_launch(launch_skinny_resblock(op, static_cast<int>(heads), data<T>(bias) + layer * width, s.layers * width,
                                          mutable_data<T>(out), stream),
                   "draft_heads (small-T resblock)");
      return out;
    }
  }
  const at::Tensor acc = shared_input
                             ? at::mm(z[0], weight.select(1, 0).reshape({heads * width, width}).t())  // [T, H*d]
                             : at::bmm(z, weight.select(1, layer).transpose(1, 2));                  // [H, T, d]
  const ResblockShape shape{static_cast<int>(heads), static_cast<int>(tokens), static_cast<int>(width),
                            shared_input ? 0 : tokens * width, shared_input ? width : tokens * width,
                            shared_input ? heads * width : width, s.layers * width};
  check_launch(launch_resblock_epilogue(data<T>(z), data<T>(acc), data<T>(bias) + layer * width, mutable_data<T>(out),
                                        shape, stream),
               "draft_heads (resblock)");
  return out;
}

// Projection + temperature + log-softmax of z [H, T, d] into logq [T, H, V] fp32.
template <typename T>
void projection(const at::Tensor& z, const at::Tensor& proj, at::Tensor& logq, double inv_temperature,
                const Sizes& s, int major, cudaStream_t stream) {
  const int64_t tokens = s.tokens, width = s.width, heads = s.heads, vocab = s.vocab;
  const bool shared = proj.size(0) == 1;
  if constexpr (sizeof(T) == 2) {
    const SkinnyOperands<T> op{data<T>(z), data<T>(proj), tokens * width, shared ? 0 : vocab * width,
                               static_cast<int>(shared ? heads * tokens : tokens), static_cast<int>(vocab),
                               static_cast<int>(width)};
    if (skinny_supported(op, major)) {
      const int64_t tiles = (vocab + kSkinnyCols - 1) / kSkinnyCols;
      at::Tensor stats = at::empty({2, tokens * heads, tiles}, logq.options());
      const SkinnyLogits out{logq.data_ptr<float>(), stats[0].data_ptr<float>(), stats[1].data_ptr<float>(),
                             static_cast<int>(tokens), static_cast<int>(heads), static_cast<int>(tiles),
                             static_cast<float>(inv_temperature)};
      check_launch(launch_skinny_projection(op, shared ? 1 : static_cast<int>(heads), out, stream),
                   "draft_heads (small-T projection)");
      return;
    }
  }
  at::Tensor logits;  // [H, T, V] in the GEMM dtype
  if (shared) {
    logits = at::mm(z.reshape({heads * tokens, width}), proj[0].t());
  } else {
    logits = at::bmm(z, proj.transpose(1, 2));
  }
  logits = logits.contiguous();
  check_launch(launch_log_softmax_epilogue(data<T>(logits), logq.data_ptr<float>(), static_cast<int>(tokens),
                                           static_cast<int>(heads), static_cast<int>(vocab),
                                           static_cast<float>(inv_temperature), stream),
               "draft_heads (log-softmax)");
}

at::Tensor draft_heads_cuda(const at::Tensor& hidden, const at::Tensor& res_weight, const at::Tensor& res_bias,
                            const at::Tensor& proj_weight, double inv_temperature) {
  check_cuda(hidden, "hidden");
  const DraftHeadsSizes sizes = check_draft_heads_args(hidden, res_weight, res_bias, proj_weight, inv_temperature);
  const Sizes s{sizes.tokens, sizes.width, sizes.heads, sizes.layers, sizes.vocab};
  const c10::cuda::CUDAGuard guard(hidden.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int major = sm_major(hidden.device().index());
  auto logq = at::empty({s.tokens, s.heads, s.vocab}, hidden.options().dtype(at::kFloat));
  if (logq.numel() == 0) return logq;
  const auto weight = res_weight.contiguous();
  const auto bias = res_bias.contiguous();
  const auto proj = proj_weight.contiguous();
  dispatch_float(hidden.scalar_type(), "hidden", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    at::Tensor z = hidden.contiguous().unsqueeze(0);  // [1 or H, T, d]
    for (int64_t layer = 0; layer < s.layers; ++layer) z = resblock_layer<T>(z, weight, bias, layer, s, major, stream);
    z = z.expand({s.heads, s.tokens, s.width}).contiguous();  // a copy only without ResBlocks (layers == 0)
    projection<T>(z, proj, logq, inv_temperature, s, major, stream);
  });
  return logq;
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("draft_heads", &draft_heads_cuda); }

}  // namespace hawk
