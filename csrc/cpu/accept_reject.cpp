// hawk::accept_reject on CPU, in double so its decisions match the float64 reference. The contract (rules for
// invalid nodes, NaN rows, empty residuals) is the module docstring of hawk_kernels/ops/reference/accept_reject.py;
// this file follows it line by line.
//
// Same two-phase structure as the CUDA and Triton kernels: the decision taken at a node (the accepted child, or
// none and the bonus token sampled there) depends only on that node's target row, its children and its uniforms,
// not on the path that reached it. Phase 1 decides every (row, node) in parallel (at::parallel_for); phase 2
// walks each row from the root along the accepted children. The arithmetic of each decision is the walk's.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../op_args.h"

namespace hawk {
namespace {

// softmax of one logits row into `probs`; false if the row cannot define a law (a NaN, a +inf, or no
// finite entry), as the reference's _probs.
bool softmax_row(const double* logits, int64_t vocab, double* probs) {
  double row_max = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < vocab; ++v) {
    if (std::isnan(logits[v])) return false;
    row_max = std::max(row_max, logits[v]);
  }
  if (!std::isfinite(row_max)) return false;
  double total = 0.0;
  for (int64_t v = 0; v < vocab; ++v) total += (probs[v] = std::exp(logits[v] - row_max));
  for (int64_t v = 0; v < vocab; ++v) probs[v] /= total;
  return true;
}

// Inverse-CDF sample of an unnormalised non-negative law: smallest v with cumsum(w)[v] > u * sum(w),
// else (rounding) the last v with w[v] > 0. -1 only if w has no positive entry (never for a valid law).
int64_t sample_inverse_cdf(const std::vector<double>& weights, double uniform) {
  const int64_t vocab = static_cast<int64_t>(weights.size());
  std::vector<double> cdf(vocab);
  double running = 0.0;
  for (int64_t v = 0; v < vocab; ++v) cdf[v] = (running += weights[v]);
  const double threshold = uniform * running;
  for (int64_t v = 0; v < vocab; ++v)
    if (cdf[v] > threshold) return v;
  for (int64_t v = vocab - 1; v >= 0; --v)
    if (weights[v] > 0) return v;
  return -1;
}

struct RowInputs {
  const double* target_logits;  // [N, V]
  const double* draft_probs;    // [Q, V] softmax of each draft row (phase 0)
  const char* draft_valid;      // [Q] 0: the draft row has a NaN, a +inf, or no finite entry
  const int64_t* tokens;        // [N]
  const int64_t* laws;          // [N] row of draft_logits each node was drawn from
  const double* uniforms;       // [N, 2]
  int64_t num_rows, vocab;
};

// Siblings of a node tried in order; returns the accepted child, or -1 with `residual` holding the law
// of the bonus token.
int64_t try_children(const RowInputs& in, const std::vector<int64_t>& kids, const std::vector<double>& target_probs,
                     std::vector<double>& residual) {
  residual = target_probs;
  std::vector<int64_t> tried_tokens;
  const int64_t vocab = in.vocab;
  for (int64_t child : kids) {
    const int64_t token = in.tokens[child], law = in.laws[child];
    if (token < 0 || token >= vocab || law < 0 || law >= in.num_rows) continue;
    if (!in.draft_valid[law]) continue;
    const double* draft_probs = in.draft_probs + law * vocab;
    double norm = 1.0;  // 1 - draft mass of earlier valid siblings' tokens under this draft law
    if (!tried_tokens.empty()) {
      double tried_mass = 0.0;
      for (int64_t t : tried_tokens) tried_mass += draft_probs[t];
      norm = 1.0 - tried_mass;
    }
    const double draft_cond = norm > 0 ? draft_probs[token] / norm : 0.0;
    if (!(draft_cond > 0)) continue;
    tried_tokens.push_back(token);
    if (in.uniforms[child * 2] * draft_cond < residual[token]) return child;
    double mass = 0.0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double r = residual[v] - draft_probs[v] / norm;
      mass += (residual[v] = r > 0 ? r : 0.0);
    }
    if (mass > 0) {
      for (int64_t v = 0; v < vocab; ++v) residual[v] /= mass;
    } else {  // rounding emptied the residual: documented fallback to the target
      residual = target_probs;
    }
  }
  return -1;
}

struct Decision {
  int64_t next;   // the accepted child, or -1: the walk ends here
  int64_t bonus;  // the token sampled at this node (used when next == -1); -1 for an invalid target row
};

// Phase 1: the decision at `node` of one batch row, as the walk would take it on reaching the node.
Decision decide_node(const RowInputs& in, const std::vector<int64_t>& kids, int64_t node, bool match_rule,
                     std::vector<double>& target_probs, std::vector<double>& residual) {
  if (!softmax_row(in.target_logits + node * in.vocab, in.vocab, target_probs.data())) return {-1, -1};
  const double sample_u = in.uniforms[node * 2 + 1];
  if (match_rule) {
    const int64_t token = sample_inverse_cdf(target_probs, sample_u);
    for (int64_t child : kids)
      if (in.tokens[child] == token) return {child, token};
    return {-1, token};
  }
  const int64_t next = try_children(in, kids, target_probs, residual);
  return {next, next < 0 ? sample_inverse_cdf(residual, sample_u) : -1};
}

// Phase 0: softmax of every draft row of every batch row (the rejection rule reads them; match does not).
void draft_softmax(const at::Tensor& draft, std::vector<double>& probs, std::vector<char>& valid) {
  const int64_t rows = draft.size(0) * draft.size(1), vocab = draft.size(2);
  probs.resize(rows * vocab);
  valid.resize(rows);
  const double* logits = draft.data_ptr<double>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) valid[r] = softmax_row(logits + r * vocab, vocab, probs.data() + r * vocab);
  });
}

std::vector<std::vector<int64_t>> children_of(const at::Tensor& node_parent) {
  const auto parent_t = node_parent.contiguous();
  const int64_t* parents = parent_t.data_ptr<int64_t>();
  const int64_t num_nodes = node_parent.size(0);
  std::vector<std::vector<int64_t>> children(num_nodes);
  for (int64_t node = 1; node < num_nodes; ++node) {
    TORCH_CHECK(parents[node] >= 0 && parents[node] < node, "node_parent: node ", node, " has parent ",
                parents[node], "; expected 0 <= parent < ", node);
    children[parents[node]].push_back(node);
  }
  return children;
}

// Phase 2: from the root along the accepted children; writes path (already -1 filled), accept_len, bonus.
void walk_rows(const std::vector<Decision>& decisions, int64_t batch, int64_t num_nodes, int64_t* accept_len,
               int64_t* path, int64_t* bonus) {
  for (int64_t b = 0; b < batch; ++b) {
    const Decision* row = decisions.data() + b * num_nodes;
    int64_t* row_path = path + b * num_nodes;
    int64_t node = 0, length = 0;
    row_path[0] = 0;
    while (row[node].next >= 0) row_path[++length] = node = row[node].next;
    accept_len[b] = length;
    bonus[b] = row[node].bonus;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> accept_reject_cpu(
    const at::Tensor& target_logits, const at::Tensor& draft_logits, const at::Tensor& node_tokens,
    const at::Tensor& node_parent, const at::Tensor& node_law, const at::Tensor& uniforms, bool match_rule) {
  TORCH_CHECK(target_logits.device().is_cpu(), "target_logits: expected a CPU tensor, got device ",
              target_logits.device());
  const AcceptRejectSizes sizes =
      check_accept_reject_args(target_logits, draft_logits, node_tokens, node_parent, node_law, uniforms);
  const int64_t batch = sizes.batch, num_nodes = sizes.num_nodes, num_rows = sizes.num_rows, vocab = sizes.vocab;
  const auto children = children_of(node_parent);
  const auto target = target_logits.to(at::kDouble).contiguous();
  const auto tokens = node_tokens.contiguous();
  const auto laws = node_law.contiguous();
  const auto unif = uniforms.to(at::kDouble).contiguous();
  std::vector<double> draft_probs;
  std::vector<char> draft_valid;
  if (!match_rule) draft_softmax(draft_logits.to(at::kDouble).contiguous(), draft_probs, draft_valid);
  std::vector<Decision> decisions(batch * num_nodes);
  at::parallel_for(0, batch * num_nodes, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> target_probs(vocab), residual(vocab);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / num_nodes, node = item % num_nodes;
      RowInputs in{target.data_ptr<double>() + b * num_nodes * vocab,
                   match_rule ? nullptr : draft_probs.data() + b * num_rows * vocab,
                   match_rule ? nullptr : draft_valid.data() + b * num_rows,
                   tokens.data_ptr<int64_t>() + b * num_nodes, laws.data_ptr<int64_t>() + b * num_nodes,
                   unif.data_ptr<double>() + b * num_nodes * 2, num_rows, vocab};
      decisions[item] = decide_node(in, children[node], node, match_rule, target_probs, residual);
    }
  });
  const auto long_opts = node_tokens.options().dtype(at::kLong);
  auto accept_len = at::zeros({batch}, long_opts);
  auto path = at::full({batch, num_nodes}, -1, long_opts);
  auto bonus = at::empty({batch}, long_opts);
  walk_rows(decisions, batch, num_nodes, accept_len.data_ptr<int64_t>(), path.data_ptr<int64_t>(),
            bonus.data_ptr<int64_t>());
  return {accept_len, path, bonus};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("accept_reject", &accept_reject_cpu); }

}  // namespace hawk
