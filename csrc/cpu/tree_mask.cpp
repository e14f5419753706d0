// hawk::tree_mask on CPU: one pass over the parent pointers (topological order), as the reference.
#include <ATen/ATen.h>
#include <torch/library.h>

namespace hawk {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> tree_mask_cpu(
    const at::Tensor& node_parent, const at::Tensor& prefix_len, int64_t max_depth) {
  TORCH_CHECK(node_parent.dim() == 1, "node_parent: expected [N], got ", node_parent.sizes());
  TORCH_CHECK(prefix_len.dim() == 1, "prefix_len: expected [B], got ", prefix_len.sizes());
  TORCH_CHECK(max_depth >= 0, "max_depth: expected >= 0, got ", max_depth);
  const int64_t num_nodes = node_parent.size(0), batch = prefix_len.size(0);
  const auto parent_t = node_parent.to(at::kLong).contiguous();
  const auto prefix_t = prefix_len.to(at::kLong).contiguous();
  const int64_t* parents = parent_t.data_ptr<int64_t>();
  const auto opts = node_parent.options().dtype(at::kLong);
  auto mask = at::zeros({num_nodes, num_nodes}, opts.dtype(at::kBool));
  auto depth = at::zeros({num_nodes}, opts);
  auto first_child = at::full({num_nodes}, -1, opts);
  auto next_sibling = at::full({num_nodes}, -1, opts);
  auto retrieve = at::full({num_nodes, max_depth + 1}, -1, opts);
  auto position_ids = at::empty({batch, num_nodes}, opts);
  bool* m = mask.data_ptr<bool>();
  int64_t* d = depth.data_ptr<int64_t>();
  int64_t* fc = first_child.data_ptr<int64_t>();
  int64_t* ns = next_sibling.data_ptr<int64_t>();
  int64_t* rt = retrieve.data_ptr<int64_t>();
  std::vector<int64_t> last_child(num_nodes, -1);
  const int64_t width = max_depth + 1;
  for (int64_t node = 0; node < num_nodes; ++node) {
    if (node > 0) {
      const int64_t parent = parents[node];
      TORCH_CHECK(parent >= 0 && parent < node, "node_parent: node ", node, " has parent ", parent,
                  "; expected 0 <= parent < ", node);
      d[node] = d[parent] + 1;
      TORCH_CHECK(d[node] <= max_depth, "max_depth: node ", node, " is at depth ", d[node], " > max_depth=",
                  max_depth);
      std::copy(m + parent * num_nodes, m + (parent + 1) * num_nodes, m + node * num_nodes);
      std::copy(rt + parent * width, rt + (parent + 1) * width, rt + node * width);
      (last_child[parent] < 0 ? fc[parent] : ns[last_child[parent]]) = node;
      last_child[parent] = node;
    }
    m[node * num_nodes + node] = true;
    rt[node * width + d[node]] = node;
  }
  const int64_t* prefix = prefix_t.data_ptr<int64_t>();
  int64_t* pos = position_ids.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t node = 0; node < num_nodes; ++node) pos[b * num_nodes + node] = prefix[b] + d[node];
  return {mask, depth, position_ids, first_child, next_sibling, retrieve};
}

}  // namespace

TORCH_LIBRARY_IMPL(hawk, CPU, m) { m.impl("tree_mask", &tree_mask_cpu); }

}  // namespace hawk
