"""Prompt to pixels, one subpackage per model family: `demo` (the bundled MNIST text-to-image model)."""
