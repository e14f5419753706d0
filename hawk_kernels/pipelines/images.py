"""Images in and out of the pipelines, with Pillow: real images fitted to a layout for the VQ encoders
(`fit_images`), decoded pixels to PIL images with the image processor's statistics (`to_pil`,
`pixel_statistics`), and the checks of what a family decodes (`check_code_grid`, `one_layout`)."""
from __future__ import annotations

import torch

from ..checks import size_pair


def fit_images(images, height: int, width: int, mode: str = "RGB") -> list:
    """`images` (`check_images`) -> copies in `mode` (transparency composited onto white), each center-cropped
    to the aspect ratio height:width and resized (bicubic, the filter of Janus's, Emu3's and Lumina-mGPT's own
    resizing) to exactly width x height px (`PIL.ImageOps.fit`; an image already of that size keeps its
    pixels)."""
    from PIL import Image, ImageOps

    return [ImageOps.fit(_opaque(image).convert(mode), (width, height), method=Image.Resampling.BICUBIC)
            for image in check_images(images)]


def check_images(images) -> list:
    """A non-empty list or tuple of PIL images, each decoded now (a lazily opened file is read here) and of at
    most 8 bits per channel (`_eight_bit`: 16-bit images scaled, 32-bit and float ones refused unless their
    values are 8-bit) -> a list of them. TypeError or ValueError naming `images` (and the index and file of a
    bad item: not an image, empty, truncated or damaged, of unknown range) otherwise."""
    from PIL import Image

    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images: expected a list or tuple of PIL images, got {type(images).__name__}")
    if not images:
        raise ValueError(f"images: expected at least one image, got an empty {type(images).__name__}")
    checked = []
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"images: item {i} is a {type(image).__name__}, expected a PIL image")
        if min(image.size) < 1:
            raise ValueError(f"images: item {i} is empty ({image.size[0]}x{image.size[1]} px)")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"images: item {i}{_file_of(image)} could not be decoded ({exc})") from None
        checked.append(_eight_bit(image, i))
    return checked


def _file_of(image) -> str:
    name = getattr(image, "filename", None)
    return f" ({name})" if name else ""


def _eight_bit(image, index: int):
    """Images of more than 8 bits per pixel, which Pillow's convert() would clip at 255: 16-bit ones ('I;16*')
    are scaled by 255 / 65535 (their bit depth is known) and rounded; 32-bit integer and float ones ('I', 'F')
    carry no bit depth, so they are taken only when their values already are 8-bit (integers 0..255, as
    `convert("I")` of an 8-bit image gives) and refused otherwise, naming the image: convert such an image to 8
    bits yourself, with the range it was made for. Other modes are returned as they are."""
    import numpy as np
    from PIL import Image

    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        values = values / 257  # 65535 -> 255
    elif not (np.isfinite(values).all() and (values == np.round(values)).all()):
        values = None
    if values is None or values.min() < 0 or values.max() > 255:
        raise ValueError(f"images: item {index}{_file_of(image)} is a mode {image.mode!r} image whose values are "
                         f"not 8-bit (integers 0..255) and whose range is unknown; convert it to 8 bits ('L' or "
                         f"'RGB') yourself, scaled from the range it was made for")
    return Image.fromarray(np.round(values).astype(np.uint8))  # mode "L"


def _opaque(image):
    """Transparent pixels become white (the page a PNG is shown on), not the colour hidden under alpha 0."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image


def to_pil(pixels: torch.Tensor, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> list:
    """[B, 3, h, w] normalised pixels -> RGB PIL images: 255 * (x * std + mean), clipped, truncated to uint8
    (what the families' image processors' `postprocess` computes; mean = std = 0.5 maps [-1, 1] to [0, 255])."""
    from PIL import Image

    mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(std, dtype=torch.float32)[:, None, None]
    scaled = ((pixels.detach().float().cpu() * std + mean) * 255).clamp(0, 255)
    return [Image.fromarray(a) for a in scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()]


def pixel_statistics(processor) -> tuple:
    """(mean, std) the saved image processor normalises with; (0.5, 0.5) per channel without one."""
    image_processor = getattr(processor, "image_processor", None)
    mean, std = getattr(image_processor, "image_mean", None), getattr(image_processor, "image_std", None)
    if mean is None or std is None:
        return (0.5,) * 3, (0.5,) * 3
    return tuple(mean), tuple(std)


def check_code_grid(codes: torch.Tensor, grid: tuple[int, int] | None = None, what: str = "") -> torch.Tensor:
    """`codes` for a VQ decoder: [B, H, W] with B, H, W >= 1 (`grid`: the one (H, W) the decoder takes, `what`
    says why); ValueError naming `codes` otherwise (the decoders fail deep inside with unrelated messages)."""
    shape = tuple(codes.shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"codes: expected a [B, H, W] tensor of VQ codes (one H x W grid per image, B, H, W >= 1), "
                         f"got shape {list(shape)}")
    if grid is not None and shape[1:] != tuple(grid):
        raise ValueError(f"codes: expected [B, {grid[0]}, {grid[1]}] ({what}), got shape {list(shape)}")
    return codes


def one_layout(size, grid, side: int, model: str):
    """`size` checked against the one layout a `model` ("this Janus model") generates, side x side px: None, side
    or (side, side) -> `grid`; ValueError naming `size` otherwise."""
    what = f"None, {side} or ({side}, {side}) ({model} generates {side}x{side} px images only)"
    if size is not None and size_pair(size, 1, what) != (side, side):
        raise ValueError(f"size: expected {what}, got {size!r}")
    return grid
