// hawk::accept_reject on CUDA: the shared checks (csrc/op_args.h), current stream, dtype switch, launch of
// include/hawk/accept_reject.cuh.
#include <torch/library.h>

#include "../op_args.h"
#include "dispatch.h"
#include "hawk/accept_reject.cuh"

namespace hawk {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> accept_reject_cuda(
    const at::Tensor& target_logits, const at::Tensor& draft_logits, const at::Tensor& node_tokens,
    const at::Tensor& node_parent, const at::Tensor& node_law, const at::Tensor& uniforms, bool match_rule) {
  check_cuda(target_logits, "target_logits");
  const AcceptRejectSizes sizes =
      check_accept_reject_args(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms);
  TORCH_CHECK(sizes.vocab < (int64_t{1} << 31) && sizes.num_nodes < (int64_t{1} << 31) &&
                  sizes.num_rows < (int64_t{1} << 31),
              "target_logits: the CUDA kernel takes N, Q and V below 2**31, got ", target_logits.sizes(),
              " and draft_logits ", draft_logits.sizes());
  const c10::cuda::CUDAGuard guard(target_logits.device());
  const auto target = target_logits.contiguous();
  const auto draft = draft_logits.contiguous();
  const auto tokens = node_tokens.contiguous();
  const auto parents = node_parent.contiguous();
  const auto laws = node_law.contiguous();
  const auto unif = uniforms.to(at::kFloat).contiguous();
  const auto long_opts = target.options().dtype(at::kLong);
  auto accept_len = at::empty({sizes.batch}, long_opts);
  auto path = at::empty({sizes.batch, sizes.num_nodes}, long_opts);
  auto bonus = at::empty({sizes.batch}, long_opts);
  auto work = at::empty({sizes.batch, sizes.vocab}, target.options().dtype(at::kFloat));
  auto tried = at::empty({sizes.batch, sizes.num_nodes}, long_opts);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_float(target.scalar_type(), "target_logits", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    AcceptRejectArgs<T> args{data<T>(target), data<T>(draft), tokens.data_ptr<int64_t>(),
                             parents.data_ptr<int64_t>(), laws.data_ptr<int64_t>(), unif.data_ptr<float>(),
                             work.data_ptr<float>(), tried.data_ptr<int64_t>(), accept_len.data_ptr<int64_t>(),
                             path.data_ptr<int64_t>(), bonus.data_ptr<int64_t>(), static_cast<int>(sizes.num_nodes),
                             static_cast<int>(sizes.num_rows), static_cast<int>(sizes.vocab), match_rule};
    check_launch(launch_accept_reject(args, static_cast<int>(sizes.batch), stream), "accept_reject");
  });
  return {accept_len, path, bonus};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("accept_reject", &accept_reject_cuda); }

}  // namespace hawk
