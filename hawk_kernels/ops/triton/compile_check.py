"""Ahead-of-time compile of every Triton kernel to a cubin for a GPU target: no GPU needed (ptxas ships with
Triton). Catches what the interpreter forgives (loop-carried types, unsupported constructs).

    python -m hawk_kernels.ops.triton.compile_check [--arch 90]
Run it with TRITON_INTERPRET unset: under the interpreter the kernels are not JIT functions.
"""
from __future__ import annotations

import argparse
import sys
import time


def _variants():
    """(name, kernel, signature, constexprs, options) for every kernel and dtype the wrappers launch."""
    from . import accept_reject as ar, draft_heads as dh, philox as px, tree_mask as tm

    out = []
    for dtype in ("fp32", "bf16", "fp16"):
        ptr = f"*{dtype}"
        sig = dict(draft_ptr=ptr, stats_ptr="*fp32", total_rows="i32", vocab="i32", BLOCK_V="constexpr")
        out.append((f"accept_reject.draft_stats[{dtype}]", ar._draft_stats_kernel, sig, {"BLOCK_V": ar.BLOCK_V},
                    {"num_warps": ar.NUM_WARPS}))
        sig = dict(target_ptr=ptr, draft_ptr=ptr, stats_ptr="*fp32", tokens_ptr="*i64", parent_ptr="*i64",
                   law_ptr="*i64", uniforms_ptr="*fp32", work_ptr="*fp32", tried_ptr="*i64", next_ptr="*i64",
                   bonus_at_ptr="*i64", items="i32", num_nodes="i32", num_rows="i32", vocab="i32",
                   MATCH_RULE="constexpr", BLOCK_V="constexpr")
        for match in (False, True):
            out.append((f"accept_reject.decide[{dtype}, match={match}]", ar._decide_kernel, sig,
                        {"MATCH_RULE": match, "BLOCK_V": ar.BLOCK_V}, {"num_warps": ar.NUM_WARPS}))
        ieee = dtype == "fp32"
        options = {"num_warps": dh.NUM_WARPS, "num_stages": dh.NUM_STAGES}
        for bm in (16, dh.MAX_BLOCK_M):  # dh.block_m(rows): every rows count takes one of the two
            sig = dict(z_ptr=ptr, weight_ptr=ptr, bias_ptr=ptr, out_ptr=ptr, tokens="i32", width="i32",
                       layers="i32", layer="i32", per_head_input="i32", IEEE="constexpr", BLOCK_M="constexpr",
                       BLOCK_N="constexpr", BLOCK_K="constexpr")
            out.append((f"draft_heads.resblock[{dtype}, BLOCK_M={bm}]", dh._resblock_kernel, sig,
                        dict(IEEE=ieee, BLOCK_M=bm, BLOCK_N=dh.BLOCK_N, BLOCK_K=dh.BLOCK_K), options))
            sig = dict(z_ptr=ptr, proj_ptr=ptr, logq_ptr="*fp32", tile_max_ptr="*fp32", tile_sum_ptr="*fp32",
                       rows="i32", tokens="i32", width="i32", vocab="i32", heads="i32", num_tiles="i32",
                       inv_temperature="fp32", IEEE="constexpr", BLOCK_M="constexpr", BLOCK_V="constexpr",
                       BLOCK_K="constexpr")
            out.append((f"draft_heads.projection[{dtype}, BLOCK_M={bm}]", dh._projection_kernel, sig,
                        dict(IEEE=ieee, BLOCK_M=bm, BLOCK_V=dh.BLOCK_V, BLOCK_K=dh.BLOCK_K), options))
    sig = dict(next_ptr="*i64", bonus_at_ptr="*i64", accept_len_ptr="*i64", path_ptr="*i64", bonus_ptr="*i64",
               num_nodes="i32")
    out.append(("accept_reject.walk", ar._walk_kernel, sig, {}, {"num_warps": 1}))
    sig = dict(logq_ptr="*fp32", tile_max_ptr="*fp32", tile_sum_ptr="*fp32", vocab="i32", num_tiles="i32",
               BLOCK_V="constexpr", BLOCK_TILES="constexpr")
    out.append(("draft_heads.finish", dh._logsoftmax_finish_kernel, sig,
                dict(BLOCK_V=dh.FINISH_BLOCK_V, BLOCK_TILES=dh.FINISH_BLOCK_TILES), {"num_warps": 4}))
    sig = dict(parent_ptr="*i64", mask_ptr="*i1", depth_ptr="*i64", retrieve_ptr="*i64", num_nodes="i32",
               max_depth="i32", BLOCK_N="constexpr", BLOCK_D="constexpr")
    for block_n in (16, 1024, tm.MAX_NODES):
        out.append((f"tree_mask[BLOCK_N={block_n}]", tm._tree_mask_kernel, sig, dict(BLOCK_N=block_n, BLOCK_D=64),
                    {"num_warps": 4}))
    for numel in ("i32", "i64"):  # numel > 2**31 - 1 arrives as i64
        sig = dict(seed_ptr="*i64", offset_ptr="*i64", out_ptr="*fp32", numel=numel, seed_stride="i32",
                   offset_stride="i32", first_row="i32", stream="i32", BLOCK="constexpr")
        out.append((f"philox_uniforms[numel {numel}]", px._philox_uniforms_kernel, sig, dict(BLOCK=px.BLOCK),
                    {"num_warps": px.NUM_WARPS}))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="SM version, e.g. 90 for H100")
    args = parser.parse_args(argv)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import interpreting

    if interpreting():
        print("compile_check: unset TRITON_INTERPRET first", file=sys.stderr)
        return 2
    failures = 0
    for name, kernel, signature, constexprs, options in _variants():
        start = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                      target=GPUTarget("cuda", args.arch, 32), options=options)
            print(f"ok    {name:45s} sm_{args.arch} cubin {len(compiled.asm['cubin'])} B "
                  f"({time.perf_counter() - start:.1f} s)")
        except Exception as exc:  # report every kernel, fail at the end
            failures += 1
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
