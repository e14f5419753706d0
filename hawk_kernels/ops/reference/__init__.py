"""Plain-PyTorch references: the readable spec of every op, float64-capable, what tests compare against."""
from .accept_reject import accept_reject
from .draft_heads import draft_heads
from .philox import philox_uniforms
from .tree_mask import tree_mask

__all__ = ["accept_reject", "draft_heads", "tree_mask", "philox_uniforms"]
