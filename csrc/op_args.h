// Argument checks of every hawk:: op, shared by the CPU (csrc/cpu/<op>.cpp) and CUDA (csrc/cuda/<op>.cu)
// kernels, which keep only their device, stream and launch specifics. One file for all four ops: the checks
// share the helpers below, so every message has one form ("<argument>: expected <what>, got <given>"), and
// the ops' contracts sit side by side as their schemas do in csrc/ops.cpp. Torch-side (ATen), unlike the
// device code in include/hawk/*.cuh.
#pragma once
#include <ATen/ATen.h>

#include <initializer_list>
#include <sstream>
#include <string>

#include "hawk/philox.cuh"

namespace hawk {

// "[2, *, 50]" for want = {2, -1, 50} (-1: any size).
inline std::string shape_string(std::initializer_list<int64_t> want) {
  std::ostringstream out;
  out << "[";
  const char* sep = "";
  for (const int64_t size : want) {
    out << sep;
    if (size < 0) out << "*";
    else out << size;
    sep = ", ";
  }
  out << "]";
  return out.str();
}

// `t` has want.size() dimensions and the given sizes (-1 matches any).
inline void check_shape(const at::Tensor& t, const char* name, std::initializer_list<int64_t> want) {
  bool ok = t.dim() == static_cast<int64_t>(want.size());
  int64_t dim = 0;
  for (const int64_t size : want) {
    if (!ok) break;
    ok = size < 0 || t.size(dim) == size;
    ++dim;
  }
  TORCH_CHECK(ok, name, ": expected shape ", shape_string(want), ", got ", t.sizes());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType want) {
  TORCH_CHECK(t.scalar_type() == want, name, ": expected dtype ", want, ", got ", t.scalar_type());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  const at::ScalarType dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat || dtype == at::kDouble, name,
              ": expected dtype float16, bfloat16, float32 or float64, got ", dtype);
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& first) {
  TORCH_CHECK(t.device() == first.device(), name, ": expected device ", first.device(), ", got ", t.device());
}

// ------------------------------------------------------------------------------------------------ accept_reject

struct AcceptRejectSizes {
  int64_t batch, num_nodes, num_rows, vocab;
};

inline AcceptRejectSizes check_accept_reject_args(const at::Tensor& target_logits, const at::Tensor& draft_logits,
                                                  const at::Tensor& node_tokens, const at::Tensor& node_parent,
                                                  const at::Tensor& node_law, const at::Tensor& uniforms) {
  TORCH_CHECK(target_logits.dim() == 3, "target_logits: expected shape [B, N, V], got ", target_logits.sizes());
  check_floating(target_logits, "target_logits");
  const int64_t batch = target_logits.size(0), num_nodes = target_logits.size(1), vocab = target_logits.size(2);
  TORCH_CHECK(num_nodes > 0 && vocab > 0, "target_logits: expected at least one node and one vocabulary entry, got ",
              target_logits.sizes());
  check_shape(draft_logits, "draft_logits", {batch, -1, vocab});
  check_dtype(draft_logits, "draft_logits", target_logits.scalar_type());
  check_shape(node_tokens, "node_tokens", {batch, num_nodes});
  check_dtype(node_tokens, "node_tokens", at::kLong);
  check_shape(node_parent, "node_parent", {num_nodes});
  check_dtype(node_parent, "node_parent", at::kLong);
  check_shape(node_law, "node_law", {batch, num_nodes});
  check_dtype(node_law, "node_law", at::kLong);
  check_shape(uniforms, "uniforms", {batch, num_nodes, 2});
  TORCH_CHECK(uniforms.scalar_type() == at::kFloat || uniforms.scalar_type() == at::kDouble,
              "uniforms: expected dtype float32 or float64, got ", uniforms.scalar_type());
  check_same_device(draft_logits, "draft_logits", target_logits);
  check_same_device(node_tokens, "node_tokens", target_logits);
  check_same_device(node_parent, "node_parent", target_logits);
  check_same_device(node_law, "node_law", target_logits);
  check_same_device(uniforms, "uniforms", target_logits);
  return {batch, num_nodes, draft_logits.size(1), vocab};
}

// ------------------------------------------------------------------------------------------------ tree_mask

// Returns the number of nodes. Parent pointers are validated by ops.tree_mask (host-side) or the CPU kernel.
inline int64_t check_tree_mask_args(const at::Tensor& node_parent, int64_t max_depth) {
  TORCH_CHECK(node_parent.dim() == 1, "node_parent: expected shape [N], got ", node_parent.sizes());
  check_dtype(node_parent, "node_parent", at::kLong);
  TORCH_CHECK(max_depth >= 0 && max_depth < (int64_t{1} << 31) - 1,
              "max_depth: expected 0 <= max_depth < 2**31 - 1, got ", max_depth);
  return node_parent.size(0);
}

// ------------------------------------------------------------------------------------------------ draft_heads

struct DraftHeadsSizes {
  int64_t tokens, width, heads, layers, vocab;
};

inline DraftHeadsSizes check_draft_heads_args(const at::Tensor& hidden, const at::Tensor& res_weight,
                                              const at::Tensor& res_bias, const at::Tensor& proj_weight,
                                              double inv_temperature) {
  TORCH_CHECK(hidden.dim() == 2, "hidden: expected shape [T, d], got ", hidden.sizes());
  check_floating(hidden, "hidden");
  const int64_t tokens = hidden.size(0), width = hidden.size(1);
  check_shape(res_weight, "res_weight", {-1, -1, width, width});
  const int64_t heads = res_weight.size(0), layers = res_weight.size(1);
  check_shape(res_bias, "res_bias", {heads, layers, width});
  check_shape(proj_weight, "proj_weight", {-1, -1, width});
  TORCH_CHECK(proj_weight.size(0) == 1 || proj_weight.size(0) == heads, "proj_weight: expected 1 (shared) or ", heads,
              " projections, got shape ", proj_weight.sizes());
  check_dtype(res_weight, "res_weight", hidden.scalar_type());
  check_dtype(res_bias, "res_bias", hidden.scalar_type());
  check_dtype(proj_weight, "proj_weight", hidden.scalar_type());
  check_same_device(res_weight, "res_weight", hidden);
  check_same_device(res_bias, "res_bias", hidden);
  check_same_device(proj_weight, "proj_weight", hidden);
  TORCH_CHECK(inv_temperature > 0, "inv_temperature: expected > 0, got ", inv_temperature);
  return {tokens, width, heads, layers, proj_weight.size(1)};
}

// ------------------------------------------------------------------------------------------------ philox_uniforms

struct PhiloxSizes {
  int64_t numel;          // elements to draw
  int64_t rows;           // 1 when seed and offset are one each; R == shape[0] when either is per row
  int64_t row_numel;      // elements per row (numel for one row), counted within the row
  int64_t seed_stride;    // row r's key at seed[r * seed_stride]: 0 for one key
  int64_t offset_stride;  // row r's offset at offset[r * offset_stride]: 0 for one offset
};

// `name` (seed or offset): int64 () or (1,) (one `what` for the draw) or (R,) with R == shape[0] (one per row).
// Returns whether it is per row (shape (R,), R != 1).
inline bool check_philox_rows(const at::Tensor& t, const char* name, const char* what, at::IntArrayRef shape) {
  TORCH_CHECK(t.scalar_type() == at::kLong, name, ": expected an int64 tensor, got ", t.scalar_type());
  const bool per_row = t.dim() == 1 && t.numel() != 1;
  TORCH_CHECK(t.dim() <= 1 && (!per_row || shape.empty() || t.size(0) == shape[0]), name,
              ": expected an int64 tensor of shape () or (1,) (one ", what, ") or (R,) with R == shape[0] (one ",
              what, " per row), got ", t.sizes(), " for shape ", shape);
  TORCH_CHECK(!per_row || !shape.empty(), name, ": a per-row ", name, " of shape ", t.sizes(),
              " needs a shape with at least one dimension (R == shape[0]), got shape ", shape);
  return per_row;
}

// seed and offset: each int64 () or (1,) (one for the draw) or (R,) with R == shape[0] (one per row).
inline PhiloxSizes check_philox_args(const at::Tensor& seed, const at::Tensor& offset, at::IntArrayRef shape,
                                     int64_t stream) {
  const bool seed_rows = check_philox_rows(seed, "seed", "key", shape);
  const bool offset_rows = check_philox_rows(offset, "offset", "offset", shape);
  check_same_device(offset, "offset", seed);
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
  const int64_t rows = seed_rows || offset_rows ? shape[0] : 1;
  return {numel, rows, rows == 0 ? 0 : numel / rows, seed_rows ? seed.stride(0) : 0,
          offset_rows ? offset.stride(0) : 0};
}

}  // namespace hawk
