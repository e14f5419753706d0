"""Deprecated: distillation moved to `hawk_kernels.training` (distillation.py; the shard format in shards.py).
This alias goes in the next release."""
import warnings

from .training.distillation import (IMAGE_SUFFIXES, DistillSettings, distill, distill_images, image_files,
                                    model_identity, rank_and_world)
from .training.shards import (FORMAT, IMAGES_FILE, MANIFEST, PAD_ID, PROMPTS_FILE, SHARD_KEYS, load_manifest,
                              prepare_out_dir, read_prompts, read_shard, shard_path, write_shard)

__all__ = ["FORMAT", "IMAGES_FILE", "IMAGE_SUFFIXES", "MANIFEST", "PAD_ID", "PROMPTS_FILE", "SHARD_KEYS",
           "DistillSettings", "distill", "distill_images", "image_files", "load_manifest", "model_identity",
           "prepare_out_dir", "rank_and_world", "read_prompts", "read_shard", "shard_path", "write_shard"]

warnings.warn("hawk_kernels.distill is deprecated: import distill and distill_images from hawk_kernels.training",
              DeprecationWarning, stacklevel=2)
