"""Public ops. Each checks its arguments, then runs exactly one backend chosen in _backend.py."""
from .accept_reject import accept_reject
from .draft_heads import draft_heads
from .philox import DeviceRNG, philox_uniforms
from .tree_mask import tree_mask

__all__ = ["accept_reject", "draft_heads", "tree_mask", "philox_uniforms", "DeviceRNG"]
