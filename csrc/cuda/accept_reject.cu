// hawk::accept_reject on CUDA: checks, current stream, dtype switch, launch of include/hawk/accept_reject.cuh.
#include <torch/library.h>

#include "dispatch.h"
#include "hawk/accept_reject.cuh"

namespace hawk {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> accept_reject_cuda(
    const at::Tensor& target_logits, const at::Tensor& draft_logits, const at::Tensor& node_tokens,
    const at::Tensor& node_parent, const at::Tensor& node_source, const at::Tensor& uniforms, bool match_rule) {
  check_cuda(target_logits, "target_logits");
  TORCH_CHECK(target_logits.dim() == 3, "target_logits: expected [B, N, V], got ", target_logits.sizes());
  const int64_t batch = target_logits.size(0), num_nodes = target_logits.size(1), vocab = target_logits.size(2);
  TORCH_CHECK(draft_logits.dim() == 3 && draft_logits.size(0) == batch && draft_logits.size(2) == vocab,
              "draft_logits: expected [", batch, ", Q, ", vocab, "], got ", draft_logits.sizes());
  TORCH_CHECK(draft_logits.scalar_type() == target_logits.scalar_type(), "draft_logits: expected dtype ",
              target_logits.scalar_type(), ", got ", draft_logits.scalar_type());
  TORCH_CHECK(node_tokens.sizes() == at::IntArrayRef({batch, num_nodes}), "node_tokens: expected [B, N]");
  TORCH_CHECK(node_source.sizes() == at::IntArrayRef({batch, num_nodes}), "node_source: expected [B, N]");
  TORCH_CHECK(node_parent.sizes() == at::IntArrayRef({num_nodes}), "node_parent: expected [N]");
  TORCH_CHECK(uniforms.sizes() == at::IntArrayRef({batch, num_nodes, 2}), "uniforms: expected [B, N, 2]");
  TORCH_CHECK(vocab < (1LL << 31) && num_nodes < (1LL << 31), "target_logits: N and V must fit in int32");
  for (const auto* t : {&draft_logits, &node_tokens, &node_parent, &node_source, &uniforms})
    TORCH_CHECK(t->device() == target_logits.device(), "accept_reject: every input must be on ",
                target_logits.device());
  const c10::cuda::CUDAGuard guard(target_logits.device());
  const auto target = target_logits.contiguous();
  const auto draft = draft_logits.contiguous();
  const auto tokens = node_tokens.to(at::kLong).contiguous();
  const auto parents = node_parent.to(at::kLong).contiguous();
  const auto sources = node_source.to(at::kLong).contiguous();
  const auto unif = uniforms.to(at::kFloat).contiguous();
  const auto long_opts = target.options().dtype(at::kLong);
  auto accept_len = at::empty({batch}, long_opts);
  auto path = at::empty({batch, num_nodes}, long_opts);
  auto bonus = at::empty({batch}, long_opts);
  auto work = at::empty({batch, vocab}, target.options().dtype(at::kFloat));
  auto tried = at::empty({batch, num_nodes}, long_opts);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_float(target.scalar_type(), "target_logits", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    AcceptRejectArgs<T> args{data<T>(target), data<T>(draft), tokens.data_ptr<int64_t>(),
                             parents.data_ptr<int64_t>(), sources.data_ptr<int64_t>(), unif.data_ptr<float>(),
                             work.data_ptr<float>(), tried.data_ptr<int64_t>(), accept_len.data_ptr<int64_t>(),
                             path.data_ptr<int64_t>(), bonus.data_ptr<int64_t>(), static_cast<int>(num_nodes),
                             static_cast<int>(draft.size(1)), static_cast<int>(vocab), match_rule};
    check_launch(launch_accept_reject(args, static_cast<int>(batch), stream), "accept_reject");
  });
  return {accept_len, path, bonus};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("accept_reject", &accept_reject_cuda); }

}  // namespace hawk
