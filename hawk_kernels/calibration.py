"""Deprecated: tree calibration moved to `hawk_kernels.training.tree_calibration`. This alias goes in the next
release."""
import warnings

from .training.tree_calibration import (DIGIT_PROMPTS, JACOBI_CHAIN, PRIOR_WEIGHT, calibrate, exploratory_tree,
                                        measure, smoothed_rates)

__all__ = ["DIGIT_PROMPTS", "JACOBI_CHAIN", "PRIOR_WEIGHT", "calibrate", "exploratory_tree", "measure",
           "smoothed_rates"]

warnings.warn("hawk_kernels.calibration is deprecated: import from hawk_kernels.training.tree_calibration",
              DeprecationWarning, stacklevel=2)
