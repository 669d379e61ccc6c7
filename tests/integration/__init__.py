"""End-to-end tests through the CLI."""


def random_extract_args(root, cache, backbone="resnet50v2", size=32, *extra):
    """``extract`` arguments for a synthetic dataset in ``root``: untrained weights, whole
    frames at ``size`` px, the demo config otherwise; ``extra`` goes at the end."""
    return ["extract", "--config", "configs/demo.yaml", "--quiet",
            "--set", f"data.videos={root / 'videos'}", "--set", f"extract.cache={cache}",
            "--set", f"extract.backbones=[{backbone}]", "--set", "extract.weights=random",
            "--set", "data.crop.mode=none", "--set", f"extract.input_size={size}", *extra]
