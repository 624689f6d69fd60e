"""Hub human mesh recovery: SAM 3D Body (Meta; MHR rig; the gated checkpoint facebook/sam-3d-body-dinov3).

Uses the official code when the user has installed it (github.com/facebookresearch/sam-3d-body,
package `sam_3d_body`; not on PyPI; it needs torchvision, roma, timm, yacs, pytorch-lightning and
`mhr` with pymomentum). Not the PyPI `sam3d` repackaging: it carries no licence metadata, vendors
Meta's code (SAM License) and imports the same torchvision. Checkpoint files are fetched with
huggingface-hub (cached, HF_TOKEN, HF_HUB_OFFLINE): model.ckpt, model_config.yaml (next to it, where
the official loader looks) and assets/mhr_model.pt.

In: the photo, the person's box and mask (pixels) and the camera intrinsics K_33. Out: the MHR mesh,
70 keypoints, the camera translation and the focal, mapped into the project's BodyFit (metres, OpenCV
camera frame: pred_vertices + pred_cam_t, checked against the model's own 2D keypoints).
Keypoint prompts: the released code does not take them (sam-3d-body issue #102: its estimator has no
keypoint argument and feeds an empty prompt); with prompts, the embedded promptable fit refines the
person from SAM 3D Body's 2D keypoints plus the prompts (the body is then an Anny body).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipelines import hub
from pipelines.body.params import MHRParams
from pipelines.hmr.base import NoBodyFound
from pipelines.keypoints.names import COCO17_NAMES
from pipelines.registry import create, register
from pipelines.types import BodyFit, Camera, Keypoints2D, Keypoints3D, PersonDetection

WHAT = "The SAM 3D Body backend"
DEFAULT_REPO = "facebook/sam-3d-body-dinov3"
CHECKPOINT_FILES = ("model.ckpt", "model_config.yaml", "assets/mhr_model.pt")
OFFICIAL = "sam-3d-body"
HOW = ("install Meta's official code (git clone https://github.com/facebookresearch/sam-3d-body, then "
       "`pip install -e .` and its requirements; it needs a torchvision that matches your torch)")  # fmt: skip
CONSISTENCY_PX = 3.0
"""Largest mean gap between the model's own 2D keypoints and its 3D keypoints projected in our frame."""
_EXTRA_NAMES = {"left-big-toe-tip": "left_foot_index", "right-big-toe-tip": "right_foot_index"}


def project_name(mhr_name: str) -> str:
    """MHR70 keypoint name ('left-shoulder') -> the project's name ('left_shoulder'; BlazePose / COCO)."""
    return _EXTRA_NAMES.get(mhr_name, mhr_name.replace("-", "_"))


def mhr70_names() -> list[str]:
    """The 70 keypoint names, from the installed official code (sam_3d_body.metadata.mhr70)."""
    meta = hub.require_package("sam_3d_body.metadata.mhr70", OFFICIAL, WHAT, HOW)
    return [project_name(n) for n in meta.mhr_names[:70]]


def checkpoint_paths(repo_id: str = DEFAULT_REPO) -> dict[str, Any]:
    """Local paths of the checkpoint files (downloaded once; HubUnavailable names the repo and the fix)."""
    return {name: hub.download(repo_id, name, WHAT) for name in CHECKPOINT_FILES}


def _height_m(verts_v3: np.ndarray) -> float:
    """Approximate standing height: the posed mesh's extent along its longest principal axis."""
    centred = verts_v3 - verts_v3.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return float(np.ptp(centred @ axis))


def map_output(out: dict[str, Any], camera: Camera, faces_f3: np.ndarray, names: list[str],
               person: PersonDetection | None = None) -> BodyFit:  # fmt: skip
    """One person of SAM 3D Body's estimator output (its dict) -> BodyFit in the OpenCV camera frame."""
    cam_t_3 = np.asarray(out["pred_cam_t"], dtype=np.float64).reshape(3)
    verts_v3 = np.asarray(out["pred_vertices"], dtype=np.float64) + cam_t_3
    kp_k3 = np.asarray(out["pred_keypoints_3d"], dtype=np.float64)[: len(names)] + cam_t_3
    focal = float(np.asarray(out["focal_length"]).reshape(-1)[0])
    cam = replace(camera, K_33=np.array([[focal, 0, camera.K_33[0, 2]], [0, focal, camera.K_33[1, 2]], [0, 0, 1.0]]))
    own_2d = np.asarray(out["pred_keypoints_2d"], dtype=np.float64)[: len(names)]
    gap = float(np.linalg.norm(cam.project(kp_k3) - own_2d, axis=1).mean())
    if not (kp_k3[:, 2] > 0).all() or gap > CONSISTENCY_PX:
        raise hub.HubUnavailable(
            f"{WHAT}: its output is not in the expected camera frame (3D keypoints + pred_cam_t projected with "
            f"its focal miss its own 2D keypoints by {gap:.1f} px); this version of sam-3d-body is not supported."
        )
    per_kp: dict[str, float] = {}
    if person is not None:
        found = dict(zip(person.keypoints2d.names, zip(person.keypoints2d.xy_k2, person.keypoints2d.conf_k,
                                                       strict=True), strict=True))  # fmt: skip
        for name, xy in zip(names, cam.project(kp_k3), strict=True):
            if name in found and found[name][1] > 0.5:
                per_kp[name] = float(np.linalg.norm(xy - found[name][0]))
    errs = np.array(list(per_kp.values()))
    joint_names = [n for n in [*COCO17_NAMES, "left_foot_index", "right_foot_index", "neck"] if n in names]
    expr = out.get("expr_params")
    params = MHRParams(shape_params=np.asarray(out["shape_params"]), model_params=np.asarray(out["mhr_model_params"]),
                       cam_t_3=cam_t_3, focal_px=np.array(focal),
                       expr_params=None if expr is None else np.asarray(expr))  # fmt: skip
    return BodyFit(
        model="mhr",
        params=params,
        verts_cam_v3=verts_v3,
        faces_f3=np.asarray(faces_f3, dtype=np.int64),
        joints3d_cam=Keypoints3D(joint_names, kp_k3[[names.index(n) for n in joint_names]], frame="cam"),
        height_m=_height_m(verts_v3),
        reprojection_px_mean=float(errs.mean()) if len(errs) else float("nan"),
        reprojection_px_max=float(errs.max()) if len(errs) else float("nan"),
        per_keypoint_px=per_kp,
    )


@dataclass
class Sam3dState:
    """What the image mode reads back from a fit (the focal) and hands back as `warm` (unused here)."""

    focal_px: float
    root_pos_3: np.ndarray

    def copy(self) -> Sam3dState:
        return Sam3dState(self.focal_px, self.root_pos_3.copy())


@dataclass
class Sam3dReport:
    focal_log_var: float | None = None


@dataclass
class Sam3dPersonFit:
    body: BodyFit
    state: Any
    report: Any


@register("hmr", "hub")
class HubSam3DBodyHMR:
    """SAM 3D Body from the box, mask and intrinsics; keypoint prompts refined by the embedded fit."""

    needs_keypoints = False
    """It works from the box (and mask): mask-only and box-only detections get a body too."""

    def __init__(self, body: str = "anny", repo_id: str = DEFAULT_REPO, device: str | None = None,
                 estimator: Any = None, names: list[str] | None = None, **_unused: Any) -> None:  # fmt: skip
        """`estimator`: an object with the official SAM3DBodyEstimator's process_one_image and faces (tests);
        `names`: the 70 keypoint names (default: from the official code's metadata)."""
        self.names = names
        if estimator is None:
            hub.require_package("torchvision", "torchvision", WHAT)  # the official estimator imports it
            hub.require_package("sam_3d_body", OFFICIAL, WHAT, HOW)
        self.repo_id, self.device_override, self._estimator = repo_id, device, estimator
        self._refiner: Any = None
        self.body_name = body

    @staticmethod
    def unavailable_reason() -> str | None:
        missing = hub.missing_packages("torch", "torchvision", "sam_3d_body", "mhr", "huggingface_hub")
        if missing:
            return (f"SAM 3D Body (hub backend) needs the Python package(s) {', '.join(missing)}; "
                    f"{HOW}, and accept the licence of {DEFAULT_REPO} on huggingface.co.")  # fmt: skip
        return None

    def estimator(self) -> Any:
        if self._estimator is None:
            build = hub.require_package("sam_3d_body.build_models", OFFICIAL, WHAT, HOW)
            est_mod = hub.require_package("sam_3d_body.sam_3d_body_estimator", OFFICIAL, WHAT, HOW)
            device = hub.choose_device(self.device_override)
            paths = checkpoint_paths(self.repo_id)
            model, cfg = build.load_sam_3d_body(str(paths["model.ckpt"]), device=device,
                                                mhr_path=str(paths["assets/mhr_model.pt"]))  # fmt: skip
            self._estimator = est_mod.SAM3DBodyEstimator(sam_3d_body_model=model, model_cfg=cfg)
        return self._estimator

    def refiner(self) -> Any:
        """The embedded promptable fit (for keypoint prompts, which SAM 3D Body does not take)."""
        if self._refiner is None:
            self._refiner = create("hmr", "embedded", body="anny")
        return self._refiner

    def warmup(self) -> None:
        self.estimator()

    def add_native_pose(self, fit: BodyFit) -> None:
        if fit.model == "anny":
            self.refiner().add_native_pose(fit)

    def fit(self, camera: Camera, person: PersonDetection, prompts: dict[str, tuple[float, float]] | None = None,
            warm: Any = None, estimate_focal: bool = False, focal_prior_px: float | None = None,
            fast: bool = False, image_rgb_hw3: np.ndarray | None = None) -> Sam3dPersonFit | Any:  # fmt: skip
        """SAM 3D Body on the person's box (and mask) with the camera's intrinsics; `image_rgb_hw3` is required."""
        if image_rgb_hw3 is None:
            raise ValueError(f"{WHAT} needs the image (image_rgb_hw3)")
        est = self.estimator()
        names = self.names or mhr70_names()
        masks = None if person.mask_hw is None else (np.asarray(person.mask_hw) >= 0.5).astype(np.uint8)[None]
        outs = est.process_one_image(image_rgb_hw3, bboxes=np.asarray(person.bbox_xyxy, np.float64)[None],
                                     masks=masks, cam_int=np.asarray(camera.K_33, np.float64)[None],
                                     use_mask=masks is not None)  # fmt: skip
        if not outs:
            box = [round(float(v)) for v in person.bbox_xyxy]
            raise NoBodyFound(f"{WHAT} found no body in the person's box {box}.")
        body = map_output(outs[0], camera, est.faces, names, person)
        if prompts:
            return self._refine(camera, person, body, names, prompts, estimate_focal, focal_prior_px)
        state = Sam3dState(float(body.params["focal_px"]), np.asarray(body.params["cam_t_3"]))
        return Sam3dPersonFit(body, state, Sam3dReport())

    def _refine(self, camera: Camera, person: PersonDetection, body: BodyFit, names: list[str],
                prompts: dict[str, tuple[float, float]], estimate_focal: bool, focal_prior_px: float | None) -> Any:
        """The embedded fit from SAM 3D Body's keypoints (projected; high confidence) and the prompts."""
        focal = float(body.params["focal_px"])
        cam = replace(camera, K_33=np.array([[focal, 0, camera.K_33[0, 2]], [0, focal, camera.K_33[1, 2]], [0, 0, 1]]))
        kp = person.keypoints2d
        xy = {n: p for n, p in zip(kp.names, kp.xy_k2, strict=True)}
        conf = {n: c for n, c in zip(kp.names, kp.conf_k, strict=True)}
        joints = dict(zip(body.joints3d_cam.names, cam.project(body.joints3d_cam.xyz_k3), strict=True))
        for name, p in joints.items():  # SAM 3D Body's keypoints replace the detector's where it has them
            xy[name], conf[name] = p, 0.95
        order = list(xy)
        detection = replace(person, keypoints2d=Keypoints2D(order, np.array([xy[n] for n in order]),
                                                            np.array([conf[n] for n in order])))  # fmt: skip
        return self.refiner().fit(camera, detection, prompts, estimate_focal=estimate_focal,
                                  focal_prior_px=focal_prior_px)  # fmt: skip
