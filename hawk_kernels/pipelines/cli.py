"""Deprecated: `hawk generate` moved to `hawk_kernels.cli.generate` (add_parser, run, write_pngs) and the size
argument to `hawk_kernels.cli.common.pixel_size`. This alias goes in the next release."""
import warnings

from ..cli.common import pixel_size
from ..cli.generate import add_parser as add_generate_parser
from ..cli.generate import run as generate_command
from ..cli.generate import write_pngs

__all__ = ["add_generate_parser", "generate_command", "pixel_size", "write_pngs"]

warnings.warn("hawk_kernels.pipelines.cli is deprecated: `hawk generate` lives in hawk_kernels.cli.generate",
              DeprecationWarning, stacklevel=2)
