"""The model a command runs on: `--demo` (the bundled model) or `--model DIR` (a checkpoint directory), one of
them. The command line decides which here, once (`model_choice`); a command then holds an ImagePipeline and
never asks which model it has. What can be judged before the model loads (the demo's prompt words and layout,
the checkpoint directory) is checked by the choice itself."""
from __future__ import annotations

import json
import operator
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..checks import as_dtype
from .common import UsageError, as_flag_error, number


def add_model_arguments(parser, model_help: str, demo_help: str = "the bundled model", pixels: bool = False) -> None:
    """--demo, --model DIR|REPO (a local directory, or a Hugging Face Hub repository id), --revision, --dtype; and
    with `pixels` (a command that decodes or encodes images), --vqgan."""
    parser.add_argument("--demo", action="store_true", help=demo_help)
    parser.add_argument("--model", metavar="DIR|REPO", help=model_help + "; or a Hugging Face Hub repository id "
                        "(org/name), fetched into the Hub's cache (HF_HOME) on first use")
    parser.add_argument("--revision", default=None,
                        help="with a Hub repository id as --model: its branch, tag or commit (default: main)")
    parser.add_argument("--tokenizer", metavar="DIR|REPO", default=None,
                        help="the processor / tokenizer files, where --model has none (Lumina-mGPT-7B-512 and -1024: "
                             "Alpha-VLLM/Lumina-mGPT-7B-768, whose tokenizer upstream reads)")
    if pixels:
        parser.add_argument("--vqgan", metavar="FILE", default=None,
                            help="Lumina-mGPT: Meta's vqgan.ckpt, where it is not in the model directory (a Hub "
                                 "snapshot does not hold it)")
    parser.add_argument("--dtype", default=None,
                        help="float32, bfloat16, ... (default: the checkpoint's; the demo's float32)")


def add_layout_arguments(parser) -> None:
    """The image layout of a plain causal LM trained from a token file (train-heads --model DIR --data FILE)."""
    parser.add_argument("--height", type=number(int, 1), help="with a --data file: image rows (tokens)")
    parser.add_argument("--width", type=number(int, 1), help="with a --data file: image codes per row")
    parser.add_argument("--row-end", type=number(int, 0), default=None,
                        help="with a --data file: the row-end token id (default: none, no row-end token)")
    parser.add_argument("--image-range", type=number(int, 0), nargs=2, metavar=("LO", "HI"),
                        help="with a --data file: image code ids [LO, HI)")


@dataclass
class TrainingSet:
    """Sequences held in memory with the backbone they train heads for (train-heads without a distilled --data)."""

    backbone: object
    family: str | None  # what the heads record (None: a plain causal LM)
    train: object  # TensorSequences
    held_out: object


class BundledModel:
    """--demo: the bundled MNIST text-to-image model."""

    def check_inputs(self, prompts=None, size=None) -> None:
        """Prompt words and the layout, from the demo's tokenizer alone (the model does not load)."""
        self.known_layout(size, prompts)

    def known_layout(self, size=None, prompts=None):
        """The demo's layout for `size` (and `prompts` checked), from its tokenizer alone (the model does not
        load); UsageError naming --size or --prompts."""
        from ..pipelines.demo.model import load_demo_tokenizer
        from ..pipelines.demo.pipeline import demo_layout

        vq, vocab = load_demo_tokenizer()
        try:
            grid = demo_layout(vq, vocab, size)
            for prompt in prompts or ():
                if isinstance(prompt, str):
                    vocab.encode_prompt(prompt)  # unknown words fail here
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None  # "size: ..." -> "--size: ..."
        return grid

    def load(self, device, heads=None, dtype=None, compile="auto", attn_implementation=None):
        from ..pipelines.demo import pipeline  # looked up at call time: tests replace load_demo_pipeline

        with _flag_errors(heads):
            return pipeline.load_demo_pipeline(device=device, heads=heads, dtype=_torch_dtype(dtype) or torch.float32,
                                               compile=compile, attn_implementation=attn_implementation or "sdpa")

    def training_set(self, args, device) -> TrainingSet:
        """The MNIST digits (train and held-out splits) as sequences for the bundled model."""
        from ..pipelines.demo.training_data import demo_sequences
        from ..training import TensorSequences

        if args.data is not None:
            raise UsageError("--data: with --demo, a directory made by `hawk distill` (or none: the MNIST digits)")
        print("loading the bundled model and the MNIST digits...", flush=True)
        pipe = self.load(device, dtype=args.dtype)
        vq, vocab = pipe.vq, pipe.vocab
        print("encoding the digits into VQ codes (train and held-out splits)...", flush=True)
        train, body_start = demo_sequences(vq, vocab, "train", seed=args.seed)
        held, _ = demo_sequences(vq, vocab, "heldout", seed=args.seed)
        return TrainingSet(pipe.backbone(pipe.layout(None)), pipe.family,
                           TensorSequences(train, body_start, vocab.pad_id),
                           TensorSequences(held, body_start, vocab.pad_id))


class CheckpointModel:
    """--model DIR|REPO: a checkpoint directory, or a Hub repository fetched into the Hub's cache when first needed
    (hub.py); then loaded offline."""

    def __init__(self, source: str, revision: str | None = None, vqgan: str | None = None,
                 tokenizer: str | None = None):
        self.source, self.revision, self.vqgan, self.tokenizer = source, revision, vqgan, tokenizer
        self._directory = None

    @property
    def directory(self) -> str:
        """The local directory of --model (a Hub repository's snapshot, fetched on first use)."""
        if self._directory is None:
            from ..hub import local_dir

            with _flag_errors(None):
                self._directory = str(local_dir("model_dir", self.source, "config.json", self.revision))
        return self._directory

    def check_inputs(self, prompts=None, size=None) -> None:
        """Nothing to judge before loading: prompts go through the processor saved with the checkpoint."""

    def known_layout(self, size=None):
        """None: a checkpoint's layouts are known once it loads."""
        return None

    def load(self, device, heads=None, dtype=None, compile="auto", attn_implementation=None):
        from ..pipelines import load_pipeline

        print(f"loading {self.source}...", flush=True)
        with _flag_errors(heads):
            return load_pipeline(self.source, heads=heads, device=device, dtype=_torch_dtype(dtype), compile=compile,
                                 attn_implementation=attn_implementation, revision=self.revision, vqgan=self.vqgan,
                                 tokenizer=self.tokenizer)

    def training_set(self, args, device) -> TrainingSet:
        """A torch file of sequences (--data) for any transformers causal LM, its layout from --height,
        --width, --image-range and --row-end; a tenth of the sequences is held out."""
        from transformers import AutoModelForCausalLM

        from ..backbones import backbone_for
        from ..training import TensorSequences
        from ..training.batch_losses import check_token_ids

        self._refuse_family()
        sequences, body_start, pad_id, grid = _token_file(args)
        check_head_counts(args, grid.height, grid.width)
        print(f"loading {self.source}...", flush=True)
        model = self._causal_lm(AutoModelForCausalLM, _torch_dtype(args.dtype))
        backbone = backbone_for(model.eval().to(device), grid)
        try:  # the ids against the model's vocabulary (the layout was checked before it loaded)
            check_token_ids(sequences, body_start, grid, backbone.vocab_size, pad_id, where=f"--data: {args.data!r}")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        split = max(1, sequences.shape[0] // 10)
        return TrainingSet(backbone, None,
                           TensorSequences(sequences[split:], body_start, pad_id),
                           TensorSequences(sequences[:split], body_start, pad_id))

    def _refuse_family(self) -> None:
        """A Janus, Emu3, Chameleon (Lumina-mGPT) or LlamaGen checkpoint is not a plain causal LM:
        AutoModelForCausalLM would refuse it, or load its language model with every weight missing (random). Its
        heads train from `hawk distill` shards, refused here before anything loads."""
        from ..pipelines import FAMILIES

        path = os.path.join(self.directory, "config.json")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (ValueError, OSError) as exc:
            raise UsageError(f"--model: {path!r} is not a readable JSON config ({exc})") from None
        model_type = config.get("model_type") if isinstance(config, dict) else None
        if model_type in FAMILIES:
            raise UsageError(f"--model: {self.source!r} is a checkpoint of the {model_type} family, whose heads "
                             f"train from a `hawk distill` directory, not a --data token file: run `hawk distill --model "
                             f"{self.source} --prompts FILE --out DATA`, then `hawk train-heads --model "
                             f"{self.source} --data DATA`")

    def _causal_lm(self, auto_class, dtype):
        """The checkpoint as a causal LM with every weight read from its files: weights that would be initialised
        at random (missing from the checkpoint, or of another shape) refuse it, never train heads on them
        silently. transformers' own load report is kept quiet; the error line names the weights."""
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model, info = auto_class.from_pretrained(self.directory, local_files_only=True, output_loading_info=True,
                                                     **({} if dtype is None else dict(dtype=dtype)))
        except (ValueError, OSError, RuntimeError, KeyError) as exc:  # not a causal LM, unreadable weights
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"--model: {self.source!r} does not load as a transformers causal LM ({first})") \
                from None
        finally:
            hf_logging.set_verbosity(verbosity)
        absent = sorted(info.get("missing_keys") or ()) + sorted(str(k[0]) if isinstance(k, tuple) else str(k)
                                                                  for k in info.get("mismatched_keys") or ())
        if absent:
            raise UsageError(f"--model: {len(absent)} weight(s) of {self.source!r} are not in its checkpoint files "
                             f"(first: {absent[0]}) and would be random: heads trained on them would be useless; "
                             f"give a complete checkpoint")
        return model


HEADS_ERRORS = ("heads", "directory", "draft_heads_config.json", "draft_heads.safetensors")  # what heads errors name


@contextmanager
def _flag_errors(heads):
    """Errors of loading a model with heads that name the library's arguments (`heads: ...`, `model_dir: ...`,
    `attn_implementation: ...`) -> UsageError naming the flags (--heads, --model, --attn-implementation). Where
    stderr is not a terminal, transformers' loading bars are off."""
    import sys

    if not sys.stderr.isatty():  # a log file or pipe: transformers' weight-loading bar would be carriage-return noise
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as exc:
        flags = {"model_dir": "--model", "attn_implementation": "--attn-implementation", "revision": "--revision",
                 "vqgan": "--vqgan", "tokenizer": "--tokenizer",
                 **({name: "--heads" for name in HEADS_ERRORS} if heads is not None else {})}
        raise as_flag_error(exc, flags) or exc from None


def model_choice(args):
    """--demo or --model DIR|REPO (exactly one; a directory holding config.json, or a Hub repository id) ->
    BundledModel or CheckpointModel."""
    from ..hub import is_repo_id

    if args.demo == (args.model is not None):
        raise UsageError("give --demo (the bundled model) or --model DIR, one of them")
    _torch_dtype(getattr(args, "dtype", None))  # a bad --dtype: refused before anything loads
    revision, vqgan, tokenizer = (getattr(args, name, None) for name in ("revision", "vqgan", "tokenizer"))
    if vqgan is not None and not os.path.isfile(vqgan):
        raise UsageError(f"--vqgan: no such file {vqgan!r} (expected Meta's vqgan.ckpt)")
    if args.demo:
        given = [flag for flag, value in (("--revision", revision), ("--vqgan", vqgan), ("--tokenizer", tokenizer))
                 if value is not None]
        if given:
            raise UsageError(f"{given[0]}: with --model, not --demo (the bundled model has one version, and its own "
                             f"tokenizer and pixel decoder)")
        return BundledModel()
    local = os.path.isdir(args.model)
    if local and revision is not None:
        raise UsageError(f"--revision: with a Hub repository id as --model, not a local directory ({args.model!r})")
    if not os.path.isfile(os.path.join(args.model, "config.json")) and (local or not is_repo_id(args.model)):
        raise UsageError(f"--model: {args.model!r} is not a model directory (no config.json) nor a Hugging Face Hub "
                         f"repository id (org/name)" + _convert_hint(args.model))
    return CheckpointModel(args.model, revision, vqgan, tokenizer)


def _convert_hint(path: str) -> str:
    """For a --model that is or holds .pt files (LlamaGen's released files, not a model directory): the command that
    makes one of them."""
    import glob

    pt = path.endswith(".pt") or bool(glob.glob(os.path.join(glob.escape(path), "*.pt")))  # unreadable: no hint
    return ("; LlamaGen's released .pt files become one with `hawk convert-llamagen --gpt GPT.pt --vq VQ.pt "
            "--image-size PX --out DIR` (docs/real_models.md, \"LlamaGen\")") if pt else ""


def check_head_counts(args, height: int, width: int) -> None:
    """--horizontal / --vertical against the layout the heads train on (head_trainer.check_heads_fit): a head
    without targets would train on nothing and report loss 0."""
    from ..training.head_trainer import check_heads_fit

    try:
        check_heads_fit(args.horizontal, args.vertical, height, width)
    except ValueError as exc:
        raise as_flag_error(exc, {"num_horizontal": "--horizontal", "vertical_depth": "--vertical"}) or exc from None


def _torch_dtype(name):
    """--dtype: None or a name of checks.FLOAT_DTYPES (what load_pipeline takes), refused before anything loads."""
    try:
        return as_dtype("--dtype", name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _token_file(args):
    """--data FILE with the layout flags -> (sequences [N, L], body_start, pad_id, ImageGrid), all checked."""
    from ..grid import ImageGrid
    from ..training.batch_losses import check_token_ids

    missing = [flag for flag, value in (("--data", args.data), ("--height", args.height), ("--width", args.width),
                                        ("--image-range", args.image_range)) if value is None]
    if missing:
        raise UsageError(f"with --model, give {', '.join(missing)} (or --data DIR made by hawk distill)")
    sequences, body_start, pad_id = _load_token_file(args.data)
    try:
        grid = ImageGrid(height=args.height, width=args.width, row_end_token=args.row_end,
                         image_token_range=tuple(args.image_range))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"grid: {exc}") from None
    if sequences.shape[1] < body_start + grid.num_body_tokens:
        raise UsageError(f"--data: sequences of length {sequences.shape[1]} cannot hold body_start {body_start} "
                         f"+ {grid.num_body_tokens} image tokens ({args.height} x {grid.row_stride})")
    try:  # the image bodies against the layout, before the model loads (its vocabulary: after)
        check_token_ids(sequences, body_start, grid, None, pad_id, where=f"--data: {args.data!r}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return sequences, body_start, pad_id, grid


def _load_token_file(path: str):
    if not os.path.isfile(path):
        raise UsageError(f"--data: no such file {path!r}")
    try:
        data = torch.load(path, weights_only=True)
    except Exception as exc:  # pickle, zip, EOF, ... errors of a file that is not one torch.save wrote
        raise UsageError(f"--data: {path!r} is not a torch file of sequences that torch.load(weights_only=True) "
                         f"reads ({type(exc).__name__}); expected {{'sequences': LongTensor [N, L], 'body_start': "
                         f"int, 'pad_id': int or None}}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--data: expected a dict {{'sequences': LongTensor [N, L], 'body_start': int, "
                         f"'pad_id': int or None}}, got {type(data).__name__}")
    for key in ("sequences", "body_start"):
        if key not in data:
            raise UsageError(f"--data: missing key {key!r} (has {sorted(data)})")
    sequences = data["sequences"]
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point:
        raise UsageError(f"--data: 'sequences' must be an integer tensor [N, L], got "
                         f"{getattr(sequences, 'dtype', type(sequences).__name__)} {tuple(getattr(sequences, 'shape', ()))}")
    if sequences.shape[0] < 2:
        raise UsageError(f"--data: need at least 2 sequences (one is held out), got {sequences.shape[0]}")
    body_start, pad_id = _whole(data["body_start"]), data.get("pad_id")
    if body_start is None or not 0 <= body_start < sequences.shape[1]:
        raise UsageError(f"--data: 'body_start' must be an int in [0, {sequences.shape[1]}), got "
                         f"{data['body_start']!r}")
    return sequences.long(), body_start, pad_id if _whole(pad_id) is None else _whole(pad_id)


def _whole(value) -> int | None:
    """An int or a 0-d integer tensor as an int (None: anything else, a bool included)."""
    try:
        return None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        return None
