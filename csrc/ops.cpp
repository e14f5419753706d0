// Every hawk:: schema, declared once. Implementations: csrc/cpu/<op>.cpp (CPU), csrc/cuda/<op>.cu (CUDA), both
// checking their arguments with csrc/op_args.h; fake (meta) kernels live in hawk_kernels/ops/_library.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import hawk_kernels._C` only has to run the static registrations below; the module itself is empty.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(hawk, m) {
  // Exact multi-draft tree verification; node_law [B, N] is the row of draft_logits (the draft law) each node
  // was drawn from. Returns (accept_len [B], path [B, N], bonus [B]), all int64.
  m.def("accept_reject(Tensor target_logits, Tensor draft_logits, Tensor node_tokens, Tensor node_parent, "
        "Tensor node_law, Tensor uniforms, bool match_rule) -> (Tensor, Tensor, Tensor)");
  // Tree-attention metadata; returns (ancestor_mask [N, N] bool, depth [N] int64, retrieve [N, max_depth + 1]
  // int64).
  m.def("tree_mask(Tensor node_parent, int max_depth) -> (Tensor, Tensor, Tensor)");
  // All draft heads: ResBlocks + projection + log-softmax; returns draft_logq [T, H, V] float32.
  m.def("draft_heads(Tensor hidden, Tensor res_weight, Tensor res_bias, Tensor proj_weight, "
        "float inv_temperature) -> Tensor");
  // Stateless Philox4x32-10 uniforms keyed by (seed, offset, stream); seed/offset int64 () or (1,) tensors
  // read on the device; returns float32 `shape` in [0, 1 - 2**-24].
  m.def("philox_uniforms(Tensor seed, Tensor offset, int[] shape, int stream) -> Tensor");
}
