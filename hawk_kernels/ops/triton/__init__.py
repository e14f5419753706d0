"""Triton kernels: one file per op (launch wrapper on top, @triton.jit kernel below)."""


def unavailable_reason(op: str) -> str | None:
    return f"no Triton kernel for {op} yet"
