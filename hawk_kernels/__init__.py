"""hawk_kernels: exact (lossless) speculative decoding for autoregressive text-to-image models.

Hawk (arXiv 2510.25739): horizontal + vertical draft heads, a speculation cache for vertical drafts, a
spatial sampling pool, one candidate tree verified in one backbone pass with exact multi-draft rejection.
"""
from . import ops
from .decoder import MODES, DecodeSession, HawkDecoder, HawkOutput
from .grid import ImageGrid
from .heads import DraftHeads, DraftHeadsConfig
from .pipelines import load_pipeline
from .pipelines.demo.pipeline import load_demo_pipeline
from .target import SamplingConfig
from .tree import TreeTemplate

__all__ = ["MODES", "DecodeSession", "DraftHeads", "DraftHeadsConfig", "HawkDecoder", "HawkOutput", "ImageGrid",
           "SamplingConfig", "TreeTemplate", "ops", "load_demo_pipeline", "load_pipeline"]
__version__ = "0.1.0"

