"""Just enough of an sm_90 GPU for inductor to write its CUDA code for a graph on a machine without one.

Used by benchmarks/cuda_codegen.py to predict, on a CPU box, which kernels the compiled decode step launches on an
H100 / H200. Needs a CUDA build of torch (the GPU host's: scripts/gpu_stack_on_cpu.sh's venv) and Triton with its
NVIDIA backend; no driver, no GPU. `install()` patches, for the rest of the process:
- the device queries inductor and dynamo make (is_available, device properties, capability, current device and
  stream, the RNG state they save and restore) with an H100's answers (132 SMs, sm_90);
- fake tensors' GPU-context start (an empty tensor on the device);
- Triton's active driver (the target it compiles for: cuda, sm_90, warp 32);
- `AsyncCompile.triton`: each kernel's source is kept (KERNELS) and nothing is compiled or loaded.

What differs from a real GPU's compile (so the counts are a prediction, not a measurement):
- inductor's pattern passes built from real device tensors are off (pad_mm, the attention-pattern rewrite, misc
  patterns), and so is joint-graph constant folding (it evaluates on the device);
- sdpa: torch chooses its kernel by asking the device, which fake tensors cannot (they would get the math path);
  `sdpa_as_on_sm90` rewrites a graph's sdpa calls to the kernel sm_90 runs for those inputs (flash without a mask,
  memory-efficient attention with one: the step always passes its tree mask);
- no autotuning (inductor's default, mode=None: GEMMs stay cuBLAS `extern_kernels.mm`).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

KERNELS: list[tuple[str, str]] = []  # (name, Triton source) of every kernel inductor asked to compile
CAPABILITY = (9, 0)
SMS = 132


def supported() -> str | None:
    """None if this torch and Triton can fake a CUDA device, else why not."""
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build; predicting CUDA kernels needs a CUDA build of torch "
                "(no GPU needed): e.g. the venv of scripts/gpu_stack_on_cpu.sh")
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure means no NVIDIA backend
        return f"Triton's NVIDIA backend does not import ({type(error).__name__}: {error})"
    return None


def install() -> None:
    """Patch this process (see the module docstring); call after any real CPU work that asks about CUDA."""
    _device_queries()
    _inductor_and_triton()


def _device_queries() -> None:
    from torch._inductor.runtime import hints
    import torch._subclasses.fake_tensor as fake_tensor

    major, minor = CAPABILITY
    props = hints.DeviceProperties(type="cuda", index=0, multi_processor_count=SMS, cc=major * 10 + minor,
                                   major=major, regs_per_multiprocessor=65536, max_threads_per_multi_processor=2048,
                                   warp_size=32)
    hints.DeviceProperties.create = staticmethod(lambda device: props)
    cuda_props = SimpleNamespace(name="fake sm_90", major=major, minor=minor, multi_processor_count=SMS,
                                 total_memory=80 * 2**30, regs_per_multiprocessor=65536,
                                 max_threads_per_multi_processor=2048, warp_size=32, gcnArchName="",
                                 L2_cache_size=50 * 2**20, shared_memory_per_block_optin=227 * 1024)
    stream = SimpleNamespace(device=torch.device("cuda", 0), device_index=0, device_type=1, stream_id=0,
                             cuda_stream=0)
    for name, value in dict(is_available=lambda: True, device_count=lambda: 1, current_device=lambda: 0,
                            get_device_capability=lambda *a, **k: CAPABILITY,
                            get_device_properties=lambda *a, **k: cuda_props,
                            get_device_name=lambda *a, **k: cuda_props.name, set_device=lambda *a, **k: None,
                            _lazy_init=lambda: None, is_initialized=lambda: True,
                            get_rng_state=lambda *a, **k: torch.zeros(16, dtype=torch.uint8),
                            set_rng_state=lambda *a, **k: None, _exchange_device=lambda index: 0,
                            _maybe_exchange_device=lambda index: 0, current_stream=lambda *a, **k: stream).items():
        setattr(torch.cuda, name, value)
    torch._C._cuda_getDevice = lambda: 0
    torch._C._accelerator_getDeviceIndex = lambda: 0
    torch.accelerator.current_device_index = lambda: 0
    torch.accelerator.current_stream = lambda *a, **k: stream
    fake_tensor.init_gpu_context = lambda device: None


class _Driver:
    """Triton's view of the device: the target it compiles for."""

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", CAPABILITY[0] * 10 + CAPABILITY[1], 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, *args):
        return 0

    def get_device_interface(self):
        return torch.cuda

    def is_active(self):
        return True

    def get_active_torch_device(self):
        return torch.device("cuda", 0)


class _UncompiledKernel:
    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr):  # run(), precompile(), ...: nothing runs without a device
        return lambda *args, **kwargs: None


def _inductor_and_triton() -> None:
    import torch._inductor.config as inductor_config
    import torch._inductor.fx_passes.joint_graph as joint_graph
    import torch._inductor.scheduler as scheduler
    import torch.utils._triton as torch_triton
    from torch._inductor import async_compile
    from triton.runtime import driver

    driver.set_active(_Driver())
    joint_graph.lazy_init = lambda *args, **kwargs: None  # pattern tables traced from real device tensors
    scheduler.has_triton = torch_triton.has_triton = lambda: True
    inductor_config.fx_graph_cache = False  # its key asks the real driver
    inductor_config.joint_graph_constant_folding = False  # evaluates on the device
    inductor_config.compile_threads = 1

    def triton(self, kernel_name, source_code, device_str="cuda"):
        KERNELS.append((kernel_name, source_code))
        return _UncompiledKernel(kernel_name)

    async_compile.AsyncCompile.triton = triton


def sdpa_as_on_sm90(gm: torch.fx.GraphModule) -> int:
    """Rewrites the graph's sdpa calls to the kernel torch runs on sm_90 for them; returns how many."""
    calls = [n for n in gm.graph.nodes if n.target is torch._C._nn.scaled_dot_product_attention]
    for node in calls:
        node.target = _sdpa_sm90
    gm.recompile()
    return len(calls)


def _sdpa_sm90(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """torch's sdpa on sm_90 with these inputs: flash attention without a mask (fp16 / bf16, head dim a multiple of
    8 up to 256), else memory-efficient attention (it takes an additive mask)."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:  # the efficient kernel takes as many KV heads as queries
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], -3)
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], -3)
    head_dim = query.shape[-1]
    if attn_mask is None and query.dtype in (torch.float16, torch.bfloat16) and head_dim % 8 == 0 and head_dim <= 256:
        return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal,
                                                                  scale=scale)[0]
    return torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, attn_mask, False, dropout_p,
                                                                  is_causal, scale=scale)[0]
