"""`python -m hawk_kernels` runs the demo (same as `hawk demo`)."""
import sys

from .cli import main

sys.exit(main(sys.argv[1:] or ["demo"]))
