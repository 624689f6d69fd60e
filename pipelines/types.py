"""Typed results shared by every stage.

Conventions, once for the whole project:
- Units are metres.
- Camera frame is OpenCV: x right, y down, z forward (out of the lens).
- Pixel coordinates: origin at the top-left corner of the image, pixel centres at +0.5
  (a landmark at normalised x maps to x * width pixels). Images are RGB uint8, shape (H, W, 3).
- A transform named `a_T_b` maps points expressed in frame b into frame a.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pipelines.body.params import BodyParams
    from pipelines.depth.base import DepthResult
    from pipelines.scene.frame_scene import SceneResult

CameraSource = Literal["exif", "user", "estimated", "default", "model"]
Joints3DConvention = Literal["coco", "h36m"]
"""Where a body's joints sit: 'coco' on the surface, as COCO / BlazePose keypoints; 'h36m' at the joint
centres of the skeleton, as motion capture (Human3.6M) gives them (BodyFit.joints)."""


@dataclass
class Camera:
    """A pinhole camera (no distortion) in the OpenCV convention."""

    K_33: np.ndarray
    """Intrinsics in pixels: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    source: CameraSource = "default"
    """Where the focal length came from: exif | user | estimated | default (prior only) | model (an image
    model of the field of view, e.g. MoGe-2)."""
    world_T_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    """4x4 pose of this camera in the world frame (identity for a single image: world = camera)."""
    name: str = "camera"
    """Name of the camera (several cameras share one world frame in multi-view mode)."""

    @property
    def focal_px(self) -> float:
        return float(self.K_33[0, 0])

    @property
    def hfov_deg(self) -> float:
        return float(np.degrees(2 * np.arctan2(self.width / 2, self.K_33[0, 0])))

    @staticmethod
    def from_focal(focal_px: float, width: int, height: int, source: CameraSource) -> Camera:
        K_33 = np.array([[focal_px, 0, width / 2], [0, focal_px, height / 2], [0, 0, 1]], dtype=np.float64)
        return Camera(K_33=K_33, width=width, height=height, source=source)

    def project(self, pts_cam_n3: np.ndarray) -> np.ndarray:
        """Project camera-frame points (N, 3) in metres to pixels (N, 2)."""
        z_n1 = np.clip(pts_cam_n3[:, 2:3], 1e-6, None)
        return (pts_cam_n3[:, :2] / z_n1) @ self.K_33[:2, :2].T + self.K_33[:2, 2]


@dataclass
class Prompts:
    """What the user clicked, in pixels of the (EXIF-upright) image."""

    points_n3: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """Click points (x, y, label): label 1 = this is the person, 0 = this is not."""
    box_xyxy: np.ndarray | None = None
    """Optional box (x0, y0, x1, y1) around the person to select and refine."""
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Keypoint prompts: joint name (BlazePose or COCO name) -> where it really is (x, y)."""

    def is_empty(self) -> bool:
        return len(self.points_n3) == 0 and self.box_xyxy is None and not self.keypoints


@dataclass
class Keypoints2D:
    """Named 2D keypoints in pixels."""

    names: list[str]
    """One name per keypoint (BlazePose landmark names, then hand keypoint names)."""
    xy_k2: np.ndarray
    """Pixel coordinates (K, 2)."""
    conf_k: np.ndarray
    """Confidence in [0, 1] per keypoint (visibility x presence for BlazePose)."""

    def as_dict(self) -> dict[str, list[float]]:
        rows = zip(self.names, self.xy_k2, self.conf_k, strict=True)
        return {n: [float(x), float(y), float(c)] for n, (x, y), c in rows}


@dataclass
class Keypoints3D:
    """Named 3D keypoints in metres."""

    names: list[str]
    xyz_k3: np.ndarray
    """Coordinates (K, 3) in metres."""
    frame: str
    """Which frame the coordinates are in: 'cam' (OpenCV camera) or 'hip' (hip-centred, camera-aligned axes)."""


@dataclass
class PersonDetection:
    """One person found by the segmentation / detection stage."""

    bbox_xyxy: np.ndarray
    """Box around the person in pixels (x0, y0, x1, y1)."""
    score: float
    """Detection confidence in [0, 1]."""
    mask_hw: np.ndarray | None = None
    """Person mask, float32 (H, W) in [0, 1] (soft) at the image resolution; None for a box-only detection."""
    keypoints2d: Keypoints2D = field(default_factory=lambda: Keypoints2D([], np.zeros((0, 2)), np.zeros(0)))
    """33 BlazePose landmarks in pixels (+ 21 per visible hand once the keypoint stage ran); empty (no
    names) for a mask-only or box-only detection (e.g. a hub detector): such a person gets no
    keypoint fit unless an HMR backend works from the box and mask (has_landmarks tells)."""
    keypoints3d_hip: Keypoints3D = field(default_factory=lambda: Keypoints3D([], np.zeros((0, 3)), frame="hip"))
    """BlazePose world landmarks: metres, hip-centred, axes parallel to the camera's (OpenCV); empty when
    the detector gives none."""

    @property
    def has_landmarks(self) -> bool:
        """Whether the detector gave body landmarks (False: a mask-only or box-only detection)."""
        return len(self.keypoints2d.names) > 0 and bool(np.any(self.keypoints2d.conf_k > 0))


@dataclass
class BodyFit:
    """A body model fitted to one person, in the camera frame."""

    model: str
    """Body model name, e.g. 'anny'."""
    params: BodyParams | dict[str, np.ndarray]
    """Model parameters (pose, shape, global rotation, translation), typed per body model (AnnyParams,
    SMPLXParams, MHRParams in pipelines.body.params; each also reads as a mapping); saved as person_<id>.npz."""
    verts_cam_v3: np.ndarray
    """Mesh vertices (V, 3) in metres, OpenCV camera frame."""
    faces_f3: np.ndarray
    """Triangle indices (F, 3)."""
    joints3d_cam: Keypoints3D
    """Named joints (at least the 17 COCO names) in metres, camera frame."""
    height_m: float
    """Standing height of the fitted body in metres."""
    reprojection_px_mean: float
    """Mean 2D error of the visible keypoints used by the fit, in pixels."""
    reprojection_px_max: float
    """Largest 2D error among those keypoints, in pixels."""
    per_keypoint_px: dict[str, float] = field(default_factory=dict)
    """2D error per fitted keypoint name, in pixels."""
    joints3d_skeleton_cam: Keypoints3D | None = None
    """The body model's kinematic joint centres (hip, knee, ankle, shoulder, elbow, wrist joints and the
    pelvis; BlazePose / COCO names), metres, camera frame; None where the backend gives none. The
    convention of motion-capture skeletons (Human3.6M), where joints3d_cam is that of surface keypoints
    (COCO, BlazePose): see `joints`."""

    def joints(self, convention: Joints3DConvention = "coco") -> Keypoints3D:
        """The joints in one convention: 'coco' (joints3d_cam: keypoints as COCO / BlazePose annotate them,
        on the body's surface) or 'h36m' (joints3d_skeleton_cam: joint centres, as a mocap skeleton such as
        Human3.6M's places them; the hips wider apart, 3 cm on the rest pose). ValueError when the backend gave no
        skeleton joints."""
        if convention == "coco":
            return self.joints3d_cam
        if convention != "h36m":
            raise ValueError(f"unknown joint convention {convention!r}: 'coco' or 'h36m'")
        if self.joints3d_skeleton_cam is None:
            raise ValueError(f"the {self.model} body of this backend gives no skeleton joints ('h36m')")
        return self.joints3d_skeleton_cam


@dataclass
class PersonResult:
    """Everything known about one person in one frame."""

    id: int
    detection: PersonDetection
    body: BodyFit | None = None


@dataclass
class BackendUse:
    """Which backend ran one stage, and why it is not the one asked for (a hub model that cannot be had)."""

    stage: str
    """Stage name (see pipelines.registry): segmentation, keypoints, camera, hmr, body, depth."""
    asked: str
    """The backend the configuration asked for, e.g. 'hub'."""
    used: str
    """The backend that ran, e.g. 'embedded' after a fallback ('none' for a skipped depth stage)."""
    reason: str | None = None
    """Why `asked` could not be used (names the repo or package and the fix); None when it ran."""

    def sentence(self) -> str:
        """One sentence for the user about a fallback ('' when the asked backend ran)."""
        if self.reason is None:
            return ""
        instead = ("so this stage was skipped" if self.used == "none"
                   else f"so the {self.used} {self.stage} backend ran instead")  # fmt: skip
        return f"The {self.asked} {self.stage} backend could not be used, {instead}: {self.reason}"


@dataclass
class FrameResult:
    """The output of the pipeline for one image (or one frame of one camera)."""

    image_rgb_hw3: np.ndarray
    """The decoded, upright RGB image."""
    camera: Camera
    people: list[PersonResult]
    timings_s: dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage."""
    warnings: list[str] = field(default_factory=list)
    """Plain-language notes for the user (e.g. 'no hands visible', 'image downscaled')."""
    frame_index: int = 0
    """Index of the frame in its stream (0 for a single image)."""
    prompts: Prompts = field(default_factory=Prompts)
    """The user's prompts this result was computed with (pixels of the image)."""
    depth: DepthResult | None = None
    """Scene depth of the depth stage (None when it did not run)."""
    scene: SceneResult | None = None
    """Ground plane and metric scene around the people (pipelines.scene; None when it did not run)."""
    backends: dict[str, BackendUse] = field(default_factory=dict)
    """Per stage that ran: the backend asked for and the one used (they differ after a fallback)."""
