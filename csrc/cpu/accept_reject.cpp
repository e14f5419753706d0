// hawk::accept_reject on CPU: a plain loop per batch row, in double so its decisions match the float64
// reference. The contract (rules for invalid nodes, NaN rows, empty residuals) is the module docstring of
// hawk_kernels/ops/reference/accept_reject.py; this file follows it line by line.
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
bool softmax_row(const double* logits, int64_t vocab, std::vector<double>& probs) {
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
  const double* draft_logits;   // [Q, V]
  const int64_t* tokens;        // [N]
  const int64_t* laws;          // [N] row of draft_logits each node was drawn from
  const double* uniforms;       // [N, 2]
  int64_t num_rows, vocab;
};

// Siblings of `node` tried in order; returns the accepted child, or -1 with `residual` holding the law
// of the bonus token.
int64_t try_children(const RowInputs& in, const std::vector<int64_t>& kids, const std::vector<double>& target_probs,
                     std::vector<double>& residual, std::vector<double>& draft_probs) {
  residual = target_probs;
  std::vector<int64_t> tried_tokens;
  const int64_t vocab = in.vocab;
  for (int64_t child : kids) {
    const int64_t token = in.tokens[child], law = in.laws[child];
    if (token < 0 || token >= vocab || law < 0 || law >= in.num_rows) continue;
    if (!softmax_row(in.draft_logits + law * vocab, vocab, draft_probs)) continue;
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

// Walks one batch row; writes its path (already -1 filled) and returns (accept_len, bonus).
std::pair<int64_t, int64_t> walk_row(const RowInputs& in, const std::vector<std::vector<int64_t>>& children,
                                     bool match_rule, int64_t* path) {
  const int64_t vocab = in.vocab;
  std::vector<double> target_probs(vocab), residual(vocab), draft_probs(vocab);
  int64_t node = 0, length = 0;
  path[0] = 0;
  while (true) {
    if (!softmax_row(in.target_logits + node * vocab, vocab, target_probs)) return {length, -1};
    const double sample_u = in.uniforms[node * 2 + 1];
    int64_t next = -1, bonus = -1;
    if (match_rule) {
      bonus = sample_inverse_cdf(target_probs, sample_u);
      for (int64_t child : children[node])
        if (in.tokens[child] == bonus) { next = child; break; }
    } else {
      next = try_children(in, children[node], target_probs, residual, draft_probs);
      if (next < 0) bonus = sample_inverse_cdf(residual, sample_u);
    }
    if (next < 0) return {length, bonus};
    path[++length] = next;
    node = next;
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
  const auto parent_t = node_parent.contiguous();
  const int64_t* parents = parent_t.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> children(num_nodes);
  for (int64_t node = 1; node < num_nodes; ++node) {
    TORCH_CHECK(parents[node] >= 0 && parents[node] < node, "node_parent: node ", node, " has parent ",
                parents[node], "; expected 0 <= parent < ", node);
    children[parents[node]].push_back(node);
  }
  const auto target = target_logits.to(at::kDouble).contiguous();
  const auto draft = draft_logits.to(at::kDouble).contiguous();
  const auto tokens = node_tokens.contiguous();
  const auto laws = node_law.contiguous();
  const auto unif = uniforms.to(at::kDouble).contiguous();
  auto accept_len = at::zeros({batch}, node_tokens.options().dtype(at::kLong));
  auto path = at::full({batch, num_nodes}, -1, node_tokens.options().dtype(at::kLong));
  auto bonus = at::empty({batch}, node_tokens.options().dtype(at::kLong));
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      RowInputs in{target.data_ptr<double>() + b * num_nodes * vocab, draft.data_ptr<double>() + b * num_rows * vocab,
                   tokens.data_ptr<int64_t>() + b * num_nodes, laws.data_ptr<int64_t>() + b * num_nodes,
                   unif.data_ptr<double>() + b * num_nodes * 2, num_rows, vocab};
      const auto [length, token] = walk_row(in, children, match_rule, path.data_ptr<int64_t>() + b * num_nodes);
      accept_len.data_ptr<int64_t>()[b] = length;
      bonus.data_ptr<int64_t>()[b] = token;
    }
  });
  return {accept_len, path, bonus};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("accept_reject", &accept_reject_cpu); }

}  // namespace hawk
