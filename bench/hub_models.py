"""Hub models with random weights, saved in the real checkpoints' layout into the Hugging Face cache.

For the tests and benches, which cannot reach the hub: the app then loads them through its own
download path (pipelines.hub.download with HF_HUB_OFFLINE=1) exactly as it loads the real files.
- SAM2.1: `<repo>/<sam2.1_hiera_*.pt>` = {"model": state dict of build_sam2(<its config>)}.
- MoGe-2: `<repo>/model.pt` = {"model_config": kwargs of MoGeModel, "model": state dict}.
The real MoGe-2 ViT-L config is microsoft/MoGe's configs/train/v2.json; the released ViT-S/ViT-B
checkpoints carry their own config, which is not known here: `moge2_config` keeps the ViT-L
neck and heads and swaps the encoder, with smaller widths on request (for fast tests).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipelines import hub

_DINO_LAYERS = {"dinov2_vits14": [2, 5, 8, 11], "dinov2_vitb14": [2, 5, 8, 11], "dinov2_vitl14": [5, 11, 17, 23]}
_DINO_DIM = {"dinov2_vits14": 384, "dinov2_vitb14": 768, "dinov2_vitl14": 1024}
VITL_WIDTHS = (1024, 256, 128, 64, 32)
"""MoGe-2 ViT-L's neck and head widths (configs/train/v2.json)."""


def save_random_sam2(repo_id: str, seed: int = 0) -> Path:
    """A randomly initialised SAM2 of `repo_id`'s size, cached as that repo's checkpoint."""
    import torch
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2

    config_name, ckpt_name = HF_MODEL_ID_TO_FILENAMES[repo_id]
    torch.manual_seed(seed)
    model = build_sam2(config_name, None, device="cpu", apply_postprocessing=False)
    return _cache({"model": model.state_dict()}, repo_id, ckpt_name)


def moge2_config(backbone: str = "dinov2_vitl14", widths: tuple[int, ...] = VITL_WIDTHS) -> dict[str, Any]:
    """MoGe-2 `model_config` (points, normal, mask and metric scale heads) for a DINOv2 `backbone`."""

    def stack(dim_in: list[int], dim_out: int | None, blocks: list[int]) -> dict[str, Any]:
        return {"dim_in": dim_in, "dim_out": [None] * (len(dim_in) - 1) + [dim_out], "dim_res_blocks": list(widths),
                "num_res_blocks": blocks, "res_block_in_norm": "none", "res_block_hidden_norm": "none",
                "resamplers": ["conv_transpose"] * 3 + ["bilinear"]}  # fmt: skip

    head_blocks = [0, 1, 1, 1, 0]
    return {
        "encoder": {"backbone": backbone, "intermediate_layers": _DINO_LAYERS[backbone], "dim_out": widths[0]},
        "neck": stack([widths[0] + 2, 2, 2, 2, 2], None, [0, 2, 2, 2, 0]),
        "points_head": stack(list(widths), 3, head_blocks),
        "normal_head": stack(list(widths), 3, head_blocks),
        "mask_head": stack(list(widths), 1, head_blocks),
        "scale_head": {"dims": [_DINO_DIM[backbone], widths[0], widths[0], 1]},
        "remap_output": "exp",
        "num_tokens_range": [1200, 3600],
    }


def save_random_moge2(repo_id: str, config: dict[str, Any], seed: int = 0) -> Path:
    """A randomly initialised MoGe-2 with `config`, cached as `repo_id`'s model.pt."""
    import torch
    from moge.model.v2 import MoGeModel

    torch.manual_seed(seed)
    model = MoGeModel(**config)
    return _cache({"model_config": config, "model": model.state_dict()}, repo_id, "model.pt")


def _cache(checkpoint: dict[str, Any], repo_id: str, filename: str) -> Path:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / filename
        torch.save(checkpoint, src)
        return hub.add_to_cache(repo_id, filename, src)
