"""Hub segmentation: SAM2.1 masks for the people MediaPipe finds, and for the user's point and box prompts.

People and their 33 BlazePose landmarks (which the body fit needs) still come from the embedded
MediaPipe detector; SAM2 replaces the masks: one from each person's box, and, for prompts, one from
the clicked points and the box (instead of GrabCut). The image is embedded once and reused by every
prompt on it.

The model is built with sam2's own `build_sam2` (its hydra config of the checkpoint's size) and the
checkpoint `<file>.pt` of the Hugging Face repo (`ckpt["model"]` is the state dict), downloaded on
first use. The small image transform, prompt encoding and mask decoding are written here:
sam2's SAM2ImagePredictor imports torchvision, which CPU-only installs may not be able to load.
Pixels: origin at the top-left corner, (x, y); masks are float32 (H, W) in [0, 1].
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipelines import hub
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.registry import register
from pipelines.segmentation.embedded import EmbeddedSegmenter, _empty_keypoints, bbox_from
from pipelines.segmentation.prompts import select_person, split_prompts
from pipelines.types import PersonDetection, Prompts

WHAT = "The SAM2 segmentation backend"
DEFAULT_REPO = "facebook/sam2.1-hiera-large"
IMAGE_MEAN_3 = (0.485, 0.456, 0.406)
IMAGE_STD_3 = (0.229, 0.224, 0.225)


@dataclass
class Sam2Settings:
    repo_id: str = DEFAULT_REPO
    """Hugging Face repo of the checkpoint (facebook/sam2.1-hiera-{tiny,small,base-plus,large})."""
    image_size: int | None = None
    """Side of the square image SAM2 sees; None: the checkpoint's own (1024)."""
    box_margin_frac: float = 0.05
    """A mask from a box keeps nothing farther than this fraction of the box size outside it."""


@dataclass
class ImageEmbedding:
    """SAM2's features of one image (what every prompt on it reuses)."""

    key: str
    image_embed: Any
    """torch tensor (1, 256, S/16, S/16)."""
    high_res_feats: list[Any]
    """torch tensors (1, 32, S/4, S/4) and (1, 64, S/8, S/8)."""
    height: int
    width: int


def _image_key(rgb_hw3: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb_hw3[::5, ::5]).tobytes()).hexdigest() + str(rgb_hw3.shape)


def sam2_files(repo_id: str) -> tuple[str, str]:
    """(hydra config name, checkpoint file name) of a SAM2 repo, from sam2's own table."""
    build_sam = hub.require_package("sam2.build_sam", "sam2", WHAT)
    table = build_sam.HF_MODEL_ID_TO_FILENAMES
    if repo_id not in table:
        raise hub.HubUnavailable(f"{WHAT}: unknown SAM2 repo {repo_id!r}; use one of {', '.join(table)}.")
    return table[repo_id]


class Sam2Model:
    """SAM2 loaded once (lazily), with the last image's embedding cached."""

    def __init__(self, settings: Sam2Settings, device: str | None = None) -> None:
        self.settings = settings
        self.device_override = device
        self._model: Any = None
        self._embedding: ImageEmbedding | None = None
        self.lock = threading.Lock()

    def model(self) -> Any:
        if self._model is None:
            build_sam = hub.require_package("sam2.build_sam", "sam2", WHAT)
            device = hub.choose_device(self.device_override)
            config_name, ckpt_name = sam2_files(self.settings.repo_id)
            ckpt_path = hub.download(self.settings.repo_id, ckpt_name, WHAT)
            overrides = [] if self.settings.image_size is None else [f"++model.image_size={self.settings.image_size}"]
            self._model = build_sam.build_sam2(config_name, str(ckpt_path), device=device,
                                               hydra_overrides_extra=overrides)  # fmt: skip
        return self._model

    def embed(self, image_rgb_hw3: np.ndarray) -> ImageEmbedding:
        key = _image_key(image_rgb_hw3)
        if self._embedding is not None and self._embedding.key == key:
            return self._embedding
        import torch
        import torch.nn.functional as F

        model = self.model()
        device = next(model.parameters()).device
        size = int(model.image_size)
        h, w = image_rgb_hw3.shape[:2]
        x = torch.from_numpy(np.array(image_rgb_hw3[..., :3], dtype=np.uint8)).to(device)
        x = x.permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGE_MEAN_3, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGE_STD_3, device=device).view(1, 3, 1, 1)
        with torch.inference_mode():
            backbone_out = model.forward_image((x - mean) / std)
            _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
            levels = zip(vision_feats, feat_sizes, strict=True)
            feats = [f.permute(1, 2, 0).reshape(1, -1, fh, fw) for f, (fh, fw) in levels]
        self._embedding = ImageEmbedding(key, feats[-1], feats[:-1], h, w)
        return self._embedding

    def mask(self, image_rgb_hw3: np.ndarray, points_n3: np.ndarray, box_xyxy: np.ndarray | None) -> np.ndarray:
        """Soft mask (H, W) in [0, 1] for click points (x, y, label 1/0) and an optional box, in pixels."""
        import torch
        import torch.nn.functional as F

        emb = self.embed(image_rgb_hw3)
        model = self.model()
        device = emb.image_embed.device
        size = int(model.image_size)
        scale_2 = np.array([size / emb.width, size / emb.height])
        coords, labels = [], []
        if box_xyxy is not None:  # a box is two points with labels 2 (top-left) and 3 (bottom-right), first
            coords += list(np.asarray(box_xyxy, dtype=np.float64).reshape(2, 2) * scale_2)
            labels += [2, 3]
        for x, y, label in np.asarray(points_n3, dtype=np.float64).reshape(-1, 3):
            coords.append(np.array([x, y]) * scale_2)
            labels.append(int(label))
        if not coords:
            return np.zeros((emb.height, emb.width), dtype=np.float32)
        coords_t = torch.as_tensor(np.array(coords)[None], dtype=torch.float32, device=device)
        labels_t = torch.as_tensor(np.array(labels)[None], dtype=torch.int32, device=device)
        # One click is ambiguous (a shirt, the person): ask for three masks and keep the best-scored.
        multimask = len(labels) == 1
        with torch.inference_mode():
            sparse, dense = model.sam_prompt_encoder(points=(coords_t, labels_t), boxes=None, masks=None)
            low_res_logits, iou_pred, _, _ = model.sam_mask_decoder(
                image_embeddings=emb.image_embed, image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
                repeat_image=False, high_res_features=emb.high_res_feats,
            )  # fmt: skip
            best = int(torch.argmax(iou_pred[0]))
            logits = F.interpolate(low_res_logits[:, best : best + 1].float(), (emb.height, emb.width),
                                   mode="bilinear", align_corners=False)  # fmt: skip
            mask_hw = torch.sigmoid(logits)[0, 0].cpu().numpy().astype(np.float32)
        if box_xyxy is not None:
            mask_hw = _keep_near_box(mask_hw, np.asarray(box_xyxy, dtype=np.float64), self.settings.box_margin_frac)
        return mask_hw


def _keep_near_box(mask_hw: np.ndarray, box_xyxy: np.ndarray, margin_frac: float) -> np.ndarray:
    h, w = mask_hw.shape
    x0, y0, x1, y1 = box_xyxy
    mx, my = margin_frac * (x1 - x0), margin_frac * (y1 - y0)
    out = np.zeros_like(mask_hw)
    r0, r1 = int(max(0, np.floor(y0 - my))), int(min(h, np.ceil(y1 + my)))
    c0, c1 = int(max(0, np.floor(x0 - mx))), int(min(w, np.ceil(x1 + mx)))
    out[r0:r1, c0:c1] = mask_hw[r0:r1, c0:c1]
    return out


def _with_mask(person: PersonDetection, mask_hw: np.ndarray) -> PersonDetection:
    kp = person.keypoints2d
    n_body = min(len(kp.conf_k), len(BLAZEPOSE_NAMES))
    box = bbox_from(mask_hw, kp.xy_k2[:n_body], kp.conf_k[:n_body])
    return replace(person, mask_hw=mask_hw, bbox_xyxy=box)


@register("segmentation", "hub")
class HubSam2Segmenter:
    """MediaPipe finds the people (and their landmarks); SAM2.1 draws their masks and follows the prompts."""

    def __init__(self, repo_id: str = DEFAULT_REPO, image_size: int | None = None, device: str | None = None,
                 max_people: int = 4, people: EmbeddedSegmenter | None = None) -> None:  # fmt: skip
        hub.require_package("sam2.build_sam", "sam2", WHAT)
        self.sam2 = Sam2Model(Sam2Settings(repo_id=repo_id, image_size=image_size), device=device)
        self.people = people or EmbeddedSegmenter(max_people=max_people)

    @staticmethod
    def unavailable_reason() -> str | None:
        missing = hub.missing_packages("torch", "sam2", "huggingface_hub")
        if missing:
            return f"SAM2 (hub backend) needs the Python package(s) {', '.join(missing)}: pip install them."
        return None

    def close(self) -> None:
        self.people.close()

    def embedded_fallback(self) -> EmbeddedSegmenter:
        """The embedded segmenter to use when SAM2 cannot be had: the MediaPipe one this backend already runs."""
        return self.people

    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """The people MediaPipe finds, each with SAM2's mask from its box (landmarks unchanged)."""
        return self.masks_for(image_rgb_hw3, self.people.detect(image_rgb_hw3))

    def masks_for(self, image_rgb_hw3: np.ndarray, people: list[PersonDetection], box_grow_frac: float = 0.0
                  ) -> list[PersonDetection]:  # fmt: skip
        """Each person with SAM2's mask from their box grown by `box_grow_frac` of its size on each side
        (landmarks unchanged; a person SAM2 finds nothing for is kept as given)."""
        h, w = image_rgb_hw3.shape[:2]
        out = []
        with self.sam2.lock:
            for person in people:
                x0, y0, x1, y1 = np.asarray(person.bbox_xyxy, dtype=np.float64)
                gx, gy = box_grow_frac * (x1 - x0), box_grow_frac * (y1 - y0)
                box = np.clip([x0 - gx, y0 - gy, x1 + gx, y1 + gy], 0, [w, h, w, h])
                mask_hw = self.sam2.mask(image_rgb_hw3, np.zeros((0, 3)), box)
                out.append(_with_mask(person, mask_hw) if (mask_hw > 0.5).any() else person)
        return out

    def apply_prompts(
        self, image_rgb_hw3: np.ndarray, people: list[PersonDetection], prompts: Prompts
    ) -> list[PersonDetection]:
        """Select one person as the embedded backend does and redraw their mask with SAM2 from the
        clicks and the box (their own box when the user gave none). Prompts on nobody make a new
        person (score 1, no landmarks) when SAM2 finds something; the list order never changes."""
        h, w = image_rgb_hw3.shape[:2]
        pos_n2, neg_n2, box = split_prompts(prompts, w, h)
        if not len(pos_n2) and not len(neg_n2) and box is None:
            return list(people)
        points_n3 = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
        chosen = select_person(people, pos_n2, neg_n2, box)
        if chosen is None and not len(pos_n2) and box is None:  # negative clicks on nobody
            return list(people)
        prompt_box = box if box is not None or chosen is None else people[chosen].bbox_xyxy
        with self.sam2.lock:
            mask_hw = self.sam2.mask(image_rgb_hw3, points_n3, prompt_box)
        if chosen is None:
            if not (mask_hw > 0.5).any():
                return list(people)
            kp2d, kp3d = _empty_keypoints(BLAZEPOSE_NAMES)
            new = PersonDetection(bbox_xyxy=bbox_from(mask_hw, kp2d.xy_k2, kp2d.conf_k), score=1.0, mask_hw=mask_hw,
                                  keypoints2d=kp2d, keypoints3d_hip=kp3d)  # fmt: skip
            return [*people, new]
        out = list(people)
        out[chosen] = _with_mask(people[chosen], mask_hw)
        return out
