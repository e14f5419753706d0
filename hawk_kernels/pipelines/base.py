"""What every model-family pipeline shares: loading a checkpoint directory, heads sized for the model, argument
checks before any model work, prompt rows -> decoder batches, and codes -> pixels -> PIL images.

A family (janus.py, emu3.py, lumina.py) says how prompts become token rows (conditional and unconditional),
which layouts (`size`) it supports, how image tokens map to VQ codes and how codes become pixels. Generation
itself is always a HawkDecoder over the family's backbone adapter (hawk_kernels/backbones/): the step does
not know the family.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from ..acceptance import record
from ..backbones import backbone_for
from ..checks import as_bool, as_float, as_int, image_seeds
from ..decoder import HawkDecoder, HawkOutput
from ..drafts import default_mode, needs_heads
from ..grid import ImageGrid
from ..tree_size import checked_num_nodes, pipeline_num_nodes
from ..heads import DraftHeads, heads_for
from ..target import SamplingConfig
from .images import check_images, fit_images, pixel_statistics, to_pil
from .rows import DEFAULT_NUM_NODES, PipelineOutput, PromptRows, probe_batch, prompt_width, stack_rows


class ImagePipeline:
    """Prompt -> pixels for one model family. Subclasses set `family`, `model_class`, `defaults` and implement
    the hooks below the line."""

    family: str = ""
    model_class: str = ""  # transformers class name of the checkpoint
    defaults: dict = {}  # cfg_scale, top_k, temperature, size: the family's documented generation defaults
    required_config: tuple = ("vq_config",)  # config.json entries load_pipeline checks before loading the model
    processor_files: tuple = ()  # the saved processor's files (each a tuple of alternatives): all or no processor
    no_processor_hint: str = ""  # said where the model directory holds no processor: where the family's is found
    decode_batch: int = 1  # images per VQ model call (in_vq_batches); an int >= 1, checked where it is read

    def __init__(self, model, processor=None, heads: DraftHeads | None = None, accept_rates: dict | None = None,
                 model_dir: str | Path | None = None):
        self.model, self.processor = model, processor
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.processor_error: str | None = None  # why no processor loaded (load_pipeline sets it)
        self.device, self.dtype = model.device, model.dtype
        self.heads, self.accept_rates = None, dict(accept_rates or {})  # set_heads replaces them
        # HawkDecoder's compile word for every decoder this pipeline builds: "auto" (on CUDA), True or False
        self.compile: bool | str = "auto"
        # HawkDecoder's verification rule for every decoder this pipeline builds: "coupled" (a sampled image is the AR
        # image of its seed in every mode, tree size and batch) or "rejection" (Hawk's published rule)
        self.verify: str = "coupled"
        self._decoders: dict = {}  # (mode, grid, num_nodes, compile, verify) -> HawkDecoder
        self._backbones: dict = {}  # grid -> backbone adapter
        self.check_model()
        if heads is not None:
            self.set_heads(heads, accept_rates)

    # --- heads ------------------------------------------------------------------------------------------
    def make_heads(self, num_horizontal: int = 4, vertical_depth: int = 2, num_layers: int = 1) -> DraftHeads:
        """Untrained heads sized for this model's image path (`heads_for`), on the pipeline's device."""
        backbone = self.backbone(self.layout(None))
        return heads_for(backbone, num_horizontal, vertical_depth, num_layers, family=self.family).to(self.device)

    def set_heads(self, heads: DraftHeads, accept_rates: dict | None = None) -> None:
        """Use `heads` from now on; checked at once against this model (family, sizes, image codes).
        accept_rates: the rates measured with THESE heads ({mode: rates}, heads.load_accept_rates); rates of other
        heads are dropped, so trees take the generic priors (and hawk+jacobi gives depth 1 to Jacobi drafts)."""
        if not isinstance(heads, DraftHeads):
            raise TypeError(f"heads: expected DraftHeads or a directory, got {type(heads).__name__}")
        if heads.config.family not in (None, self.family):
            raise ValueError(f"heads: trained for the {heads.config.family!r} family, this model is {self.family!r}")
        heads, grid = heads.to(self.device), self.layout(None)
        self._new_decoder("hawk", grid, DEFAULT_NUM_NODES, heads)  # checks sizes and the code range
        self.heads, self.accept_rates = heads, dict(accept_rates or {})
        self._decoders = {}  # decoders of the old heads (and rates) are gone

    @property
    def compile_seconds(self) -> float:
        """Seconds this pipeline's decoders spent compiling their steps so far, num_nodes="auto"'s timing of the
        tree sizes included (PipelineOutput.compile_seconds counts one call's generation only)."""
        return sum(d.compiled_step.compile_seconds for d in self._decoders.values() if d.compiled_step is not None)

    # --- decoding -----------------------------------------------------------------------------------------
    def backbone(self, grid: ImageGrid):
        """The family's adapter for `grid`, built once per layout (adapters copy the image head's rows)."""
        if grid not in self._backbones:
            self._backbones[grid] = backbone_for(self.model, grid)
        return self._backbones[grid]

    def decoder(self, mode: str, grid: ImageGrid | None = None, num_nodes: int = DEFAULT_NUM_NODES) -> HawkDecoder:
        """The pipeline's decoder for (mode, layout, tree nodes), built once; grid None: the default layout."""
        if isinstance(grid, int) and not isinstance(grid, bool):  # the demo's old decoder(mode, num_nodes)
            warnings.warn("decoder(mode, num_nodes) is deprecated: decoder(mode, grid, num_nodes) or "
                          "decoder(mode, num_nodes=...)", DeprecationWarning, stacklevel=2)
            grid, num_nodes = None, grid
        grid = self.layout(None) if grid is None else grid
        key = (mode, grid, num_nodes, self.compile, self.verify)
        if key not in self._decoders:
            self._decoders[key] = self._new_decoder(mode, grid, num_nodes, self.heads)
        return self._decoders[key]

    def _new_decoder(self, mode: str, grid: ImageGrid, num_nodes: int, heads) -> HawkDecoder:
        heads = heads if needs_heads(mode) else None
        return HawkDecoder(self.backbone(grid), heads, grid, mode=mode, num_nodes=num_nodes,
                           accept_rates=self.accept_rates.get(mode), compile=self.compile, verify=self.verify)

    @torch.no_grad()
    def generate(self, prompts=None, input_ids=None, mode: str | None = None, size=None,
                 cfg_scale: float | None = None, temperature: float | None = None, top_k: int | None = None,
                 seed: int | list[int] = 0,
                 num_nodes: int | str | None = "auto", progress: bool = False, top_p: float | None = None,
                 decoder: HawkDecoder | None = None, batch_size: int | None = None,
                 negative_prompt=None) -> PipelineOutput:
        """Text `prompts` (through the processor saved with the model) or `input_ids` (rows ending where the
        image starts, as the family's own generation expects them) -> images. mode None: hawk+jacobi with heads,
        jacobi without (drafts.default_mode; the output's `mode`). Other None: the family default (`defaults`);
        temperature=0 is greedy. seed: image i gets seed + i (or seed[i]). num_nodes: the tree size,
        "auto" (the size maximising images per second at each decoder batch's size, tree_size.py: the output's
        `num_nodes`), an int (1: an AR step) or None (DEFAULT_NUM_NODES). A sampled image depends on its seed alone
        (`self.verify` "coupled", the default: the AR image of that seed, in every mode, tree size and batch); under
        "rejection" on its tree size too (with an int, or `num_nodes` passed back, the same alone or in any batch).
        Every argument is checked before any model work. decoder, batch_size, negative_prompt: see
        generate_tokens."""
        self.checked_decode_batch()  # before any token is generated
        out = self.generate_tokens(prompts, input_ids, mode, size, cfg_scale, temperature, top_k, seed, num_nodes,
                                   progress, decoder, top_p, batch_size, negative_prompt)
        out.pixels = self.decode_pixels(out.codes)
        out.images = None if out.pixels is None else self.to_images(out.pixels)
        return out

    @torch.no_grad()
    def generate_tokens(self, prompts=None, input_ids=None, mode: str | None = None, size=None,
                        cfg_scale: float | None = None, temperature: float | None = None, top_k: int | None = None,
                        seed: int | list[int] = 0, num_nodes: int | str | None = "auto", progress: bool = False,
                        decoder: HawkDecoder | None = None, top_p: float | None = None,
                        batch_size: int | None = None, negative_prompt=None) -> PipelineOutput:
        """generate() without pixel decoding (`images` and `pixels` stay None). decoder: decode with this
        HawkDecoder (built on `self.backbone(self.layout(size))`, e.g. calibration's exploratory tree) instead of
        the pipeline's own for (mode, size, num_nodes). batch_size: None decodes every prompt in one batch; k
        decodes them k rows at a time, a finished row taking the next prompt (continuous batching: memory for k
        images, not for all of them; pipelines/continuous.py). negative_prompt: the CFG branch's text, one for
        every image or one per image (None in a list: that image's default), for a family whose CFG branch is
        text (Emu3; the others raise, naming what their branch is)."""
        if batch_size is not None:
            if decoder is not None:
                raise ValueError("decoder: not with batch_size (the session's decoder is the pipeline's own)")
            from .continuous import generate_in_session

            return generate_in_session(self, batch_size, prompts, input_ids, mode, size, cfg_scale, temperature,
                                       top_k, seed, num_nodes, top_p, progress, negative_prompt)
        mode = default_mode(self.heads is not None) if mode is None else mode
        grid, sampling = self._prepare(mode, size, cfg_scale, temperature, top_k, top_p)
        as_bool("progress", progress)
        if decoder is not None:
            _check_decoder(decoder, mode, grid)
        num_nodes = checked_num_nodes(num_nodes)  # also with decoder=, which leaves it unused
        rows = self.call_rows(prompts, input_ids, grid, sampling, negative_prompt)
        seeds = image_seeds("seed", seed, len(rows.conditional))
        members = list(range(len(rows.conditional)))  # one decoder batch: prompts of any lengths, left-padded
        # the size chosen before the clock starts ("auto" may time steps and probe acceptance once: tree_size.py)
        choice = None if decoder is not None else pipeline_num_nodes(
            self, mode, grid, num_nodes, len(members), sampling, DEFAULT_NUM_NODES,
            prompt_width(rows, members, sampling.uses_cfg),
            probe=lambda: probe_batch(rows, members, seeds, sampling.uses_cfg, self.device))  # built if it runs
        decoder = decoder or self._decoder_of_size(mode, grid, choice.num_nodes)
        start = time.perf_counter()
        ids, mask, negative, negative_mask = stack_rows(rows, members, sampling.uses_cfg, self.device)
        outputs = [decoder.generate(ids, negative, sampling.cfg_scale, sampling.temperature, sampling.top_k,
                                    top_p=sampling.top_p, seed=seeds, attention_mask=mask, progress=progress,
                                    negative_attention_mask=negative_mask)]
        out = self._collect(outputs, members, rows, time.perf_counter() - start)
        out.num_nodes, out.mode = [decoder.tree.num_nodes] * len(members), mode
        if choice is not None:  # the pipeline's own decoder: its counts teach later "auto" calls (acceptance.py)
            record(choice.acceptance_key, outputs, len(members))
            out.tree_rates = choice.rates_from
        return out

    def tree_size(self, mode: str, size=None, num_nodes: int | None = None) -> int:
        """The tree size a step of `mode` runs with at `size` when asked for num_nodes (None: DEFAULT_NUM_NODES):
        1 for "ar"; a tree may hold fewer nodes than asked (medusa's heads' products, a jacobi chain)."""
        num_nodes = DEFAULT_NUM_NODES if num_nodes is None else num_nodes
        return self._decoder_of_size(mode, self.layout(size), num_nodes).tree.num_nodes

    def _decoder_of_size(self, mode: str, grid: ImageGrid, num_nodes: int) -> HawkDecoder:
        """Size 1 is the AR step (any mode); else the mode's decoder with that tree."""
        return self.decoder("ar", grid, 1) if num_nodes == 1 else self.decoder(mode, grid, num_nodes)

    def _prepare(self, mode, size, cfg_scale, temperature, top_k, top_p):
        if needs_heads(mode) and self.heads is None:  # needs_heads checks the mode name
            raise ValueError(f"heads: mode={mode!r} needs draft heads: load_pipeline(model_dir, heads=DIR or "
                             f"pipe.make_heads()), or mode='ar'")
        top_k = self._default(top_k, "top_k")
        sampling = SamplingConfig(as_float("cfg_scale", self._default(cfg_scale, "cfg_scale")),
                                  as_float("temperature", self._default(temperature, "temperature"), 0),
                                  None if top_k is None else as_int("top_k", top_k, 1), self._default(top_p, "top_p"))
        return self.layout(size), sampling

    def _default(self, value, name: str):
        return self.defaults.get(name) if value is None else value

    def prompt_room(self, grid: ImageGrid) -> tuple[int | None, int | None]:
        """(the most prompt tokens a row may have with `grid`'s image and its end token inside the model's
        positions, the model's position limit); (None, None) for a model without a limit. The one rule of the
        context checks (generate's, encode_images', and the batch jobs' before their first image)."""
        limit = self.backbone(grid).max_positions
        return (None, None) if limit is None else (limit - grid.num_body_tokens - 1, limit)

    def check_image_fits(self, grid: ImageGrid) -> None:
        """ValueError naming `size` when the layout's image alone (body and image end) exceeds the model's
        positions: what generate's context check refuses, for calls without a prompt (encode_images), before
        anything the size scales is allocated."""
        room, limit = self.prompt_room(grid)
        if room is not None and room < 0:
            raise ValueError(f"size: a {grid.height}x{grid.width}-token image is {grid.num_body_tokens + 1} tokens, "
                             f"beyond the model's max_position_embeddings={limit}")

    def call_rows(self, prompts, input_ids, grid: ImageGrid, sampling: SamplingConfig,
                  negative_prompt=None) -> PromptRows:
        """A call's prompt rows (prompt_rows) with its negative prompts (with_negatives), checked against the
        model's context."""
        rows = self.with_negatives(self.prompt_rows(prompts, input_ids, grid), negative_prompt, grid, sampling)
        self._check_context(rows, grid)
        return rows

    def with_negatives(self, rows: PromptRows, negative_prompt, grid: ImageGrid,
                       sampling: SamplingConfig) -> PromptRows:
        """`rows` with the CFG branch of each image given a negative prompt replaced by its text (negative_rows):
        negative_prompt None, a str (every image) or a list of str / None (one per image; None: its default)."""
        if negative_prompt is None:
            return rows
        if not sampling.uses_cfg:
            raise ValueError("negative_prompt: given, but cfg_scale == 1 disables classifier-free guidance")
        texts = _negative_texts(negative_prompt, len(rows.conditional))
        given = [i for i, text in enumerate(texts) if text is not None]
        unconditional = list(rows.unconditional)
        for i, row in zip(given, self.negative_rows([texts[i] for i in given], grid) if given else []):
            unconditional[i] = row
        return PromptRows(rows.conditional, unconditional, rows.argument)

    def _check_context(self, rows: PromptRows, grid: ImageGrid) -> None:
        self.check_image_fits(grid)
        room, limit = self.prompt_room(grid)
        if room is None:
            return
        for i, (cond, uncond) in enumerate(zip(rows.conditional, rows.unconditional)):
            length = max(len(cond), len(uncond))
            if length > room:
                raise ValueError(f"{rows.argument}: prompt {i} has {length} tokens; with the {grid.num_body_tokens}-"
                                 f"token image they exceed the model's max_position_embeddings={limit}")

    def _collect(self, outputs: list[HawkOutput], order: list[int], rows: PromptRows, seconds: float):
        """Decoder outputs whose rows are the prompts `order` -> one PipelineOutput in prompt order."""
        inverse = torch.argsort(torch.tensor(order)).tolist()
        image_tokens = torch.cat([out.image_tokens.cpu() for out in outputs])[inverse]
        generated = [g for out in outputs for g in out.generated.cpu()]
        rows_of = [(out, row) for out in outputs for row in range(out.generated.shape[0])]
        passes = [sum(1 for step in out.accepted_lengths if step[row] > 0) for out, row in rows_of]
        sequences = [torch.cat([torch.tensor(rows.conditional[row]), generated[k]]) for k, row in enumerate(order)]
        committed = [sum(step[row] for step in out.accepted_lengths) for out, row in rows_of]
        return PipelineOutput(None, image_tokens, self.codes(image_tokens), None, [sequences[i] for i in inverse],
                              [len(generated[i]) for i in inverse], [passes[i] for i in inverse],
                              sum(out.num_forward_passes for out in outputs), sum(committed) / max(1, sum(passes)),
                              seconds, outputs, committed=[committed[i] for i in inverse])

    # --- family hooks ---------------------------------------------------------------------------------------
    @property
    def has_pixel_decoder(self) -> bool:
        """Whether generate() can return images (else image tokens only)."""
        return True

    def check_model(self) -> None:
        """Raise ValueError when the loaded model lacks what this family's pipeline reads."""

    def layout(self, size) -> ImageGrid:
        """`size` (None: the family default) -> the body layout; ValueError naming `size` when unsupported."""
        raise NotImplementedError

    def prompt_rows(self, prompts, input_ids, grid: ImageGrid) -> PromptRows:
        raise NotImplementedError

    cfg_branch = "built by the family"  # what the CFG branch is, for negative_rows' refusal

    def negative_rows(self, texts: list[str], grid: ImageGrid) -> list[list[int]]:
        """Negative prompts -> the CFG branch's token rows, one per text (a family whose branch is text: Emu3)."""
        raise ValueError(f"negative_prompt: this {self.family} model's CFG branch is {self.cfg_branch}, not a text; "
                         f"it takes no negative prompt (Emu3 does)")

    def codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """[B, H, W] image token ids -> VQ codebook indices."""
        raise NotImplementedError

    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor | None:
        """[B, H, W] codes -> [B, 3, h, w] pixels (about [-1, 1]); None when no pixel decoder is available."""
        raise NotImplementedError

    def in_vq_batches(self, vq_call, batch: torch.Tensor) -> torch.Tensor:
        """vq_call over the family's `decode_batch` images at a time (a VQ model's peak memory grows with its
        batch; Emu3's decoder took 20.9 GB for one 720 px image), its outputs concatenated."""
        return torch.cat([vq_call(chunk) for chunk in batch.split(self.checked_decode_batch())])

    def checked_decode_batch(self) -> int:
        """`decode_batch` (settable on a pipeline), which must be an int >= 1."""
        return as_int("decode_batch", self.decode_batch, 1)

    def to_images(self, pixels: torch.Tensor) -> list:
        """decode_pixels' output -> PIL images: RGB, with the saved image processor's statistics (`to_pil`)."""
        return to_pil(pixels, *pixel_statistics(self.processor))

    def encode_images(self, images, size=None) -> torch.Tensor:
        """Real images -> the image tokens this model generates for such images: [B, H, W] int64 on the CPU, in
        the family's own ids (what `PipelineOutput.image_tokens` holds for layout `self.layout(size)`, H x W its
        grid), so `self.codes(...)` are VQ codes and `self.decode_pixels(...)` reconstructs the images. `images`:
        a non-empty list or tuple of PIL images, any mode and size (16-bit images are scaled to 8 bits; 32-bit
        integer and float ones are taken only when their values are 8-bit, and refused otherwise:
        images.check_images); each is center-cropped to the layout's aspect ratio and resized to its pixel size,
        then normalised by the model's image processor (`image_pixels`), and the batch goes through the family's
        VQ encoder `decode_batch` images at a time. `size`: checked as generate checks it, the model's positions
        included, before any pixel is made."""
        raise NotImplementedError

    def default_image_processor(self):
        """The image processor `image_pixels` uses when none was saved with the model: the family's documented
        preprocessing."""
        raise NotImplementedError

    # --- shared image helpers ---------------------------------------------------------------------------------
    def image_pixels(self, images, grid: ImageGrid, height: int, width: int) -> torch.Tensor:
        """`images` (checked: `check_images`) -> [B, 3, height, width] float32 pixels for the VQ encoder of
        layout `grid` (checked to fit the model's positions, before anything of its size is made): `fit_images`
        to the layout, then the image processor saved with the model (`self.processor.image_processor`, else
        `default_image_processor()`) rescales and normalises them, its own resizing and cropping turned off
        (the images already have the layout's size; Janus's pad-to-square is then a no-op)."""
        images = check_images(images)
        self.check_image_fits(grid)  # a VQ encoder's memory grows with the size (Emu3: GBs per 720 px image)
        fitted = fit_images(images, height, width)
        processor = getattr(self.processor, "image_processor", None) or self.default_image_processor()
        return processor(images=fitted, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]

    # --- shared prompt helpers --------------------------------------------------------------------------------
    def tokenizer(self, argument: str = "prompts"):
        """The tokenizer saved with the model (ValueError naming `argument` when there is none)."""
        if self.processor is None:
            raise ValueError(f"{argument}: text prompts need the processor/tokenizer saved in the model directory; "
                             f"none was found for this {self.family} model ({self.processor_error or 'not given'}): "
                             f"pass input_ids instead")
        return getattr(self.processor, "tokenizer", self.processor)


def _check_decoder(decoder, mode: str, grid: ImageGrid) -> None:
    """generate(decoder=...): a HawkDecoder of the call's mode and layout (it replaces the pipeline's own)."""
    if not isinstance(decoder, HawkDecoder):
        raise TypeError(f"decoder: expected a HawkDecoder or None, got {type(decoder).__name__}")
    if decoder.mode != mode:
        raise ValueError(f"decoder: its mode is {decoder.mode!r}, the call's mode={mode!r}")
    if decoder.grid != grid:
        raise ValueError(f"decoder: built for the layout {decoder.grid}, the call's size needs {grid}")


def _negative_texts(negative_prompt, count: int) -> list[str | None]:
    """negative_prompt: a str (every image) or a list of str / None, one per image -> one entry per image."""
    if isinstance(negative_prompt, str):
        return [negative_prompt] * count
    if not isinstance(negative_prompt, (list, tuple)) or not all(t is None or isinstance(t, str)
                                                                  for t in negative_prompt):
        raise TypeError(f"negative_prompt: expected a str or a list of str (None: an image's default), got "
                        f"{type(negative_prompt).__name__} {negative_prompt!r:.60}")
    if len(negative_prompt) != count:
        raise ValueError(f"negative_prompt: expected one per image ({count}), got {len(negative_prompt)}")
    return list(negative_prompt)
