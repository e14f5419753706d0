// hawk::accept_reject on CUDA: the shared checks (csrc/op_args.h), current stream, dtype switch, workspaces, and
// the launches of include/hawk/accept_reject.cuh (draft-stats prologue, per-node decide kernel with its fused walk).
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
  TORCH_CHECK(sizes.vocab < (int64_t{1} << 31) && sizes.batch * sizes.num_nodes < (int64_t{1} << 31) &&
                  sizes.batch * sizes.num_rows < (int64_t{1} << 31),
              "target_logits: the CUDA kernel takes V, B x N and B x Q below 2**31, got ", target_logits.sizes(),
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
  const int batch = static_cast<int>(sizes.batch), num_nodes = static_cast<int>(sizes.num_nodes);
  const int num_rows = static_cast<int>(sizes.num_rows), vocab = static_cast<int>(sizes.vocab);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_float(target.scalar_type(), "target_logits", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    AcceptRejectPlan plan;
    check_launch(plan_accept_reject<T>(batch, num_nodes, vocab, &plan), "accept_reject (plan)");
    // float workspace: draft stats [B, Q, 2], then the residual rows [grid, V] when V does not fit in shared memory
    const int64_t stats_floats = 2 * sizes.batch * sizes.num_rows;
    const int64_t work_floats = plan.row_in_smem ? 0 : static_cast<int64_t>(plan.grid) * vocab;
    auto floats = at::empty({stats_floats + work_floats}, target.options().dtype(at::kFloat));
    // int workspace: next [B, N], bonus_at [B, N], tried [grid, N], the two queue counters
    const int64_t items = sizes.batch * sizes.num_nodes;
    auto ints = at::empty({2 * items + static_cast<int64_t>(plan.grid) * num_nodes + 2}, target.options().dtype(at::kInt));
    int* int_base = ints.data_ptr<int>();
    AcceptRejectArgs<T> args{data<T>(target), data<T>(draft), tokens.data_ptr<int64_t>(),
                             parents.data_ptr<int64_t>(), laws.data_ptr<int64_t>(), unif.data_ptr<float>(),
                             reinterpret_cast<float2*>(floats.data_ptr<float>()), floats.data_ptr<float>() + stats_floats,
                             int_base + 2 * items, int_base, int_base + items,
                             reinterpret_cast<unsigned*>(int_base + 2 * items + static_cast<int64_t>(plan.grid) * num_nodes),
                             accept_len.data_ptr<int64_t>(), path.data_ptr<int64_t>(), bonus.data_ptr<int64_t>(),
                             batch, num_nodes, num_rows, vocab, match_rule, plan};
    check_launch(launch_accept_reject(args, batch, stream), "accept_reject");
  });
  return {accept_len, path, bonus};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CUDA, m) { m.impl("accept_reject", &accept_reject_cuda); }

}  // namespace hawk
