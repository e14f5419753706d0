"""The public API shows its real signatures (no `*args, **kwargs` wrappers), and the names that moved in issue 19
still resolve for one release, with a DeprecationWarning, to the same objects."""
from __future__ import annotations

import importlib
import inspect
import sys

import pytest

import hawk_kernels as hk
from hawk_kernels import training
from hawk_kernels.pipelines import ImagePipeline, PipelineOutput


def _callables():
    for name in hk.__all__:
        obj = getattr(hk, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"hawk_kernels.{name}", obj
    for name in training.__all__:
        yield f"hawk_kernels.training.{name}", getattr(training, name)
    for name in ("generate", "generate_tokens", "decoder", "make_heads", "set_heads", "encode_images", "layout"):
        yield f"ImagePipeline.{name}", getattr(ImagePipeline, name)
    yield "hawk_kernels.pipelines.load_pipeline", hk.load_pipeline


@pytest.mark.parametrize("name, obj", list(_callables()), ids=lambda v: v if isinstance(v, str) else "")
def test_public_callables_show_their_real_signature(name, obj):
    variadic = [p.name for p in inspect.signature(obj).parameters.values()
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert not variadic, f"{name}{inspect.signature(obj)}"


def test_load_demo_pipeline_signature_names_its_arguments():
    assert list(inspect.signature(hk.load_demo_pipeline).parameters)[:3] == ["device", "dtype", "heads"]


@pytest.mark.parametrize("old, new, names", [
    ("hawk_kernels.trainer", "hawk_kernels.training",
     ["train_heads", "evaluate_heads", "TrainConfig", "TensorSequences", "ShardSequences", "HeadMetrics"]),
    ("hawk_kernels.distill", "hawk_kernels.training", ["distill", "distill_images"]),
    ("hawk_kernels.distill", "hawk_kernels.training.shards", ["load_manifest", "read_shard", "shard_path"]),
    ("hawk_kernels.calibration", "hawk_kernels.training.tree_calibration",
     ["calibrate", "measure", "smoothed_rates", "JACOBI_CHAIN", "DIGIT_PROMPTS"]),
    ("hawk_kernels.pipelines.cli", "hawk_kernels.cli.generate", ["write_pngs"]),
])
def test_old_import_paths_still_resolve_with_a_deprecation_warning(old, new, names, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported afresh: the warning comes at import
    with pytest.deprecated_call(match=old):
        module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is getattr(importlib.import_module(new), name), name


def test_old_names_inside_moved_modules_still_resolve(monkeypatch):
    from hawk_kernels.cli.generate import run
    from hawk_kernels.training.batch_losses import head_targets

    monkeypatch.delitem(training.__dict__, "head_targets", raising=False)
    with pytest.deprecated_call(match="batch_losses"):
        from hawk_kernels.training import head_targets as old
    assert old is head_targets
    monkeypatch.delitem(sys.modules, "hawk_kernels.pipelines.cli", raising=False)
    with pytest.deprecated_call():
        from hawk_kernels.pipelines.cli import generate_command
    assert generate_command is run
    with pytest.deprecated_call(match="PipelineOutput"):
        from hawk_kernels.pipelines.demo.pipeline import DemoOutput
    assert DemoOutput is PipelineOutput


def test_the_demos_old_output_and_decoder_calls_still_work():
    pipe = hk.load_demo_pipeline(device="cpu")
    with pytest.deprecated_call(match="decoder"):
        old = pipe.decoder("hawk", 8)
    assert old is pipe.decoder("hawk", num_nodes=8) is pipe.decoder("hawk", pipe.layout(None), 8)
    out = PipelineOutput(*[None] * 10, outputs=["the one decoder batch's HawkOutput"])
    with pytest.deprecated_call(match="outputs"):
        assert out.output is out.outputs[0]
