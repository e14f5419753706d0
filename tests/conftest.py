import os

import pytest
import torch

import cuda_checks


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one; FAILS on a GPU host whose "
                                       "_C lacks CUDA kernels or whose Triton cannot run: tests/cuda_checks.py)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on 2 CPU cores")


# without CUDA: cuda-marked tests skip; with it: they fail if _C has no CUDA kernels or Triton cannot run
pytest_collection_modifyitems, pytest_pyfunc_call = cuda_checks.hooks(torch.cuda.is_available)


@pytest.fixture(autouse=True, scope="session")
def _step_cost_cache(tmp_path_factory):
    """num_nodes="auto" measures step costs into a table: one per test session, not the user's ~/.cache."""
    os.environ["HAWK_CACHE_DIR"] = str(tmp_path_factory.mktemp("hawk_cache"))
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(int(os.environ.get("HAWK_TEST_SEED", "1234")))
