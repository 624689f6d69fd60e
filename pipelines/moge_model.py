"""MoGe-2 (PyPI `dlr-moge`, module `moge`), shared by the camera and depth hub backends.

One model copy per (repo, device) in the process, loaded on first use from the Hugging Face repo's
`model.pt` (a dict: `model_config` for `MoGeModel(**model_config)` and `model`, the state dict),
and one cached inference per image: the camera stage (field of view) and the depth stage (metric
depth, point map, validity) of the same photo run the network once.

Outputs are in the project's conventions: metres, OpenCV camera frame (x right, y down, z forward),
pixels with the origin at the top-left corner. fp16 only on CUDA (on CPU it takes minutes).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines import hub

WHAT = "The MoGe-2 backend"
DEFAULT_REPO = "Ruicheng/moge-2-vitl-normal"
CHECKPOINT_FILE = "model.pt"


@dataclass
class MoGeOutput:
    """What MoGe-2 sees in one image (H, W pixels)."""

    K_33: np.ndarray
    """Intrinsics in pixels [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (principal point at the image centre)."""
    depth_hw: np.ndarray
    """Metric depth (z) in metres, NaN where invalid."""
    points_hw3: np.ndarray
    """Point map in metres, OpenCV camera frame, NaN where invalid."""
    valid_hw: np.ndarray
    """Boolean: MoGe-2 predicts a finite surface here (sky and far background are False)."""
    confidence_hw: np.ndarray | None
    """MoGe-2's validity probability in [0, 1] per pixel (the mask head before thresholding)."""
    fov_x_deg: float | None
    """The horizontal field of view it was given (None: predicted from the image)."""


def _image_key(rgb_hw3: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb_hw3[::5, ::5]).tobytes()).hexdigest() + str(rgb_hw3.shape)


class MoGeModel:
    """A lazily loaded MoGe-2 with the last inference cached; use `shared()` to get the process's copy."""

    def __init__(self, repo_id: str = DEFAULT_REPO, device: str | None = None, num_tokens: int | None = None) -> None:
        self.repo_id = repo_id
        self.device_override = device
        self.num_tokens = num_tokens
        """Base ViT tokens per image (MoGe's own default when None: 3600, its 'most')."""
        self._model: Any = None
        self._last: tuple[tuple[str, float | None], MoGeOutput] | None = None
        self.lock = threading.Lock()

    def model(self) -> Any:
        if self._model is None:
            v2 = hub.require_package("moge.model.v2", "dlr-moge", WHAT)
            torch = hub.require_package("torch", "torch", WHAT)
            device = hub.choose_device(self.device_override)
            path = hub.download(self.repo_id, CHECKPOINT_FILE, WHAT)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            model = v2.MoGeModel(**checkpoint["model_config"])
            missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
            if missing:
                raise hub.HubUnavailable(f"{WHAT}: {CHECKPOINT_FILE} of {self.repo_id} is not a MoGe-2 checkpoint "
                                         f"(missing {len(missing)} weights, e.g. {missing[0]}).")  # fmt: skip
            self._model = model.to(device).eval()
        return self._model

    def infer(self, image_rgb_hw3: np.ndarray, fov_x_deg: float | None = None) -> MoGeOutput:
        """MoGe-2 on one RGB uint8 image; `fov_x_deg` fixes the field of view (else it is predicted)."""
        key = (_image_key(image_rgb_hw3), None if fov_x_deg is None else round(float(fov_x_deg), 6))
        with self.lock:
            if self._last is not None and self._last[0] == key:
                return self._last[1]
            out = self._infer(image_rgb_hw3, fov_x_deg)
            self._last = (key, out)
            return out

    def _infer(self, image_rgb_hw3: np.ndarray, fov_x_deg: float | None) -> MoGeOutput:
        import torch

        model = self.model()
        device = next(model.parameters()).device
        h, w = image_rgb_hw3.shape[:2]
        x = torch.from_numpy(np.array(image_rgb_hw3[..., :3], dtype=np.uint8)).to(device)
        x = x.permute(2, 0, 1).float() / 255.0
        # `infer` thresholds the validity; the mask head's logits (before the resize and sigmoid that
        # `forward` applies) give the probability. (infer calls forward directly: no hook fires there.)
        raw: dict[str, Any] = {}
        head = getattr(model, "mask_head", None)
        hook = head.register_forward_hook(lambda _m, _i, out: raw.update(mask=out[-1])) if head is not None else None
        try:
            with warnings.catch_warnings():
                # MoGe's fp32 post-processing asks CPU autocast for float32, which torch only warns about.
                warnings.filterwarnings("ignore", message="In CPU autocast", category=UserWarning)
                out = model.infer(x, num_tokens=self.num_tokens, fov_x=fov_x_deg, use_fp16=device.type == "cuda",
                                  apply_mask=True)  # fmt: skip
        finally:
            if hook is not None:
                hook.remove()
        K_norm_33 = out["intrinsics"].float().cpu().numpy().astype(np.float64)
        K_33 = np.diag([w, h, 1.0]) @ K_norm_33  # normalised (fx / width, cx = 0.5) -> pixels
        depth_hw = out["depth"].float().cpu().numpy().astype(np.float32)
        points_hw3 = out["points"].float().cpu().numpy().astype(np.float32)
        valid_hw = out["mask"].cpu().numpy().astype(bool) if "mask" in out else np.isfinite(depth_hw)
        valid_hw &= np.isfinite(depth_hw) & (depth_hw > 0)
        depth_hw[~valid_hw] = np.nan
        points_hw3[~valid_hw] = np.nan
        confidence_hw = None
        if "mask" in raw:
            logits = torch.nn.functional.interpolate(raw["mask"].float(), (h, w), mode="bilinear", align_corners=False)
            confidence_hw = torch.sigmoid(logits)[0, 0].cpu().numpy().astype(np.float32)
        return MoGeOutput(K_33=K_33, depth_hw=depth_hw, points_hw3=points_hw3, valid_hw=valid_hw,
                          confidence_hw=confidence_hw, fov_x_deg=fov_x_deg)  # fmt: skip


@functools.lru_cache(maxsize=4)
def shared(repo_id: str = DEFAULT_REPO, device: str | None = None, num_tokens: int | None = None) -> MoGeModel:
    """The process's MoGe-2 for these settings: the camera and depth backends get the same object."""
    return MoGeModel(repo_id=repo_id, device=device, num_tokens=num_tokens)


def unavailable_reason() -> str | None:
    missing = hub.missing_packages("torch", "moge", "utils3d", "huggingface_hub")
    if missing:
        return f"MoGe-2 (hub backend) needs the Python package(s) {', '.join(missing)} (PyPI: dlr-moge for moge)."
    return None
