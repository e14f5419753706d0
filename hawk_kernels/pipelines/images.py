"""Images in and out of the pipelines, with Pillow: real images fitted to a layout for the VQ encoders
(`fit_images`), and decoded pixels to PIL images with the image processor's statistics (`to_pil`,
`pixel_statistics`)."""
from __future__ import annotations

import torch


def fit_images(images, height: int, width: int, mode: str = "RGB") -> list:
    """A non-empty list or tuple of PIL images -> copies in `mode` (transparency composited onto white), each
    center-cropped to the aspect ratio height:width and resized (bicubic, the filter of Janus's, Emu3's and Lumina-mGPT's own resizing) to exactly
    width x height px (`PIL.ImageOps.fit`; an image already of that size keeps its pixels). TypeError or
    ValueError naming `images` (and the index of a bad item) otherwise."""
    from PIL import Image, ImageOps

    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images: expected a list or tuple of PIL images, got {type(images).__name__}")
    if not images:
        raise ValueError(f"images: expected at least one image, got an empty {type(images).__name__}")
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"images: item {i} is a {type(image).__name__}, expected a PIL image")
        if min(image.size) < 1:
            raise ValueError(f"images: item {i} is empty ({image.size[0]}x{image.size[1]} px)")
    return [ImageOps.fit(_opaque(image).convert(mode), (width, height), method=Image.Resampling.BICUBIC)
            for image in images]


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
