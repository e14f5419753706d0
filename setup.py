"""Builds hawk_kernels._C: the hawk:: C++ CPU ops always, the CUDA kernels only when asked for or possible.

CUDA is compiled in when HAWK_BUILD_CUDA=1, or (HAWK_BUILD_CUDA unset) when nvcc is found AND the installed
torch is a CUDA build. A visible GPU is never the criterion: build hosts often have none.
Install with `pip install --no-build-isolation .` (or `-e .`) so the installed torch is used.
"""
from __future__ import annotations

import glob
import os
import shutil

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> tuple[bool, str]:
    import torch

    flag = os.environ.get("HAWK_BUILD_CUDA", "")
    if flag in ("0", "1"):
        return flag == "1", f"HAWK_BUILD_CUDA={flag}"
    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = shutil.which("nvcc") or (CUDA_HOME and os.path.join(CUDA_HOME, "bin", "nvcc"))
    if not nvcc or not os.path.exists(nvcc):
        return False, "nvcc not found"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is not a CUDA build"
    return True, f"nvcc at {nvcc}, torch CUDA {torch.version.cuda}"


def _extensions():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    sources = rel("csrc/ops.cpp") + rel("csrc/cpu/*.cpp")
    cxx = ["-O3", "-std=c++17"]
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    use_cuda, why = _want_cuda()
    print(f"hawk_kernels: CUDA kernels {'ON' if use_cuda else 'OFF'} ({why})")
    if not use_cuda:
        return [CppExtension("hawk_kernels._C", sources, include_dirs=include_dirs, extra_compile_args={"cxx": cxx})]
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    nvcc = ["-O3", "-std=c++17", "-lineinfo"]
    if not arch:  # default: Hopper; set TORCH_CUDA_ARCH_LIST to build for others
        nvcc += ["-gencode", "arch=compute_90,code=sm_90"]
    return [CUDAExtension("hawk_kernels._C", sources + rel("csrc/cuda/*.cu"), include_dirs=include_dirs,
                          extra_compile_args={"cxx": cxx, "nvcc": nvcc})]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(ext_modules=_extensions(), cmdclass=_cmdclass())
