"""The metric scene of one photo: ground plane from the people, and the depth map (from a file or the
depth stage) refined into metres by the people and the ground, as a point cloud.

Inputs leave the pipeline's types here: plain numpy arrays go to pipelines.scene.{ground, refine,
pointcloud}. Everything is in metres in the OpenCV camera frame (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipelines.scene.depth_file import load_depth_file
from pipelines.scene.ground import FootedBody, GroundPlane, fit_ground
from pipelines.scene.pointcloud import PointCloud, backproject
from pipelines.scene.refine import RefinedDepth, refine_depth
from pipelines.scene.vanishing import fit_ground_with_vanishing, photo_segments
from pipelines.scene.zbuffer import render_depth
from pipelines.types import PersonResult

NO_DEPTH_NOTE = ("The scene shows the ground plane and the people only. For the full scene give a depth map: on "
                 "the command line --depth FILE (with --depth-kind metric|relative|inverse) or --depth hub "
                 "(MoGe-2); in the playground the depth backend 'hub' under Camera and models.")  # fmt: skip
MASK_ERODE_PX = 2
"""The people's masks are eroded by this much before their mesh depths become anchors (mask edges are unsure)."""
MAX_GROUND_DEPTH_FACTOR = 4.0
"""Ground anchors only up to this many times the farthest person's distance (far floor is ill-conditioned)."""


@dataclass
class DepthInput:
    """A depth map to refine, as read (any units; `kind` says what it is)."""

    depth_hw: np.ndarray
    """(H, W) float, NaN where unknown."""
    kind: str
    """metric | relative | inverse."""
    source: str
    """Where it came from, in words (e.g. 'file depth.npy', 'hub (MoGe-2)')."""
    confidence_hw: np.ndarray | None = None
    """Confidence in [0, 1] per pixel, when the source gives one."""


@dataclass
class SceneResult:
    """The scene around the people of one photo."""

    ground: GroundPlane | None
    """The ground under the people's feet (None without a fitted body)."""
    depth: RefinedDepth | None = None
    """The depth map in metres, refined by the people (None without a depth source)."""
    points: PointCloud | None = None
    """The scene's point cloud from the refined depth (camera frame)."""
    depth_source: str = "none"
    """Where the depth came from, in words, or 'none'."""
    notes: list[str] = field(default_factory=list)
    """Plain-language notes (how to get the full scene, why a step was skipped)."""


def read_depth_input(depth_file: str | Path | None, kind: str, width: int, height: int) -> DepthInput | None:
    """The depth file checked against the photo's size (BadDepthFileError naming it), or None."""
    if depth_file is None:
        return None
    depth = load_depth_file(depth_file, width, height, kind)
    return DepthInput(depth_hw=depth, kind=kind, source=f"file {Path(depth_file).name}")


def hub_depth_input(depth) -> DepthInput | None:  # noqa: ANN001 - pipelines.depth.base.DepthResult | None
    """The depth stage's output (metric, with its confidence) as the refinement's input."""
    if depth is None:
        return None
    depth_hw = np.where(np.asarray(depth.valid_hw, dtype=bool), depth.depth_hw, np.nan)
    return DepthInput(depth_hw=depth_hw, kind="metric", source="hub (MoGe-2)", confidence_hw=depth.confidence_hw)


def footed_bodies(people: list[PersonResult]) -> list[FootedBody]:
    out = []
    for p in people:
        if p.body is None:
            continue
        j = p.body.joints3d_cam
        joints = dict(zip(j.names, np.asarray(j.xyz_k3, dtype=np.float64), strict=True))
        if not all(f"{side}_{n}" in joints for side in ("left", "right") for n in ("shoulder", "ankle", "hip")):
            continue  # a body model without these joints says nothing about the ground
        out.append(FootedBody(verts_v3=np.asarray(p.body.verts_cam_v3, dtype=np.float64), joints=joints))
    return out


def person_anchors(people: list[PersonResult], K_33: np.ndarray, width: int, height: int
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The fitted meshes' visible-surface depth inside the (eroded) masks, NaN elsewhere; and the union of
    the people's masks (bool)."""
    zbuf = np.full((height, width), np.inf)
    union = np.zeros((height, width), dtype=bool)
    for p in people:
        union |= np.asarray(p.detection.mask_hw) >= 0.5
        if p.body is not None:
            render_depth(p.body.verts_cam_v3, p.body.faces_f3, K_33, width, height, depth_hw=zbuf)
    kernel = np.ones((2 * MASK_ERODE_PX + 1, 2 * MASK_ERODE_PX + 1), np.uint8)
    inner = cv2.erode(union.astype(np.uint8), kernel).astype(bool)
    return np.where(inner & np.isfinite(zbuf), zbuf, np.nan), union


def photo_ground(rgb_hw3: np.ndarray, K_33: np.ndarray, people: list[PersonResult], bodies: list[FootedBody],
                 up_from_scene: bool = True, all_segments_n4: np.ndarray | None = None, manhattan: bool = True
                 ) -> GroundPlane | None:  # fmt: skip
    """The photo's ground under the fitted bodies; with `up_from_scene`, its normal from the photo's lines
    where they support one (pipelines.scene.vanishing; the people's boxes masked out): the Manhattan frame's
    up (with `manhattan`), else the vertical vanishing point, else the bodies' up. `all_segments_n4`: the
    photo's line segments when already detected (vanishing.photo_line_segments)."""
    if not up_from_scene or not bodies:
        return fit_ground(bodies)
    h, w = rgb_hw3.shape[:2]
    boxes_n4 = np.array([p.detection.bbox_xyxy for p in people]).reshape(-1, 4)
    segments_n4 = photo_segments(rgb_hw3, boxes_n4, all_segments_n4)
    return fit_ground_with_vanishing([bodies], [segments_n4], K_33, w, h, manhattan=manhattan)


def build_scene(rgb_hw3: np.ndarray, K_33: np.ndarray, people: list[PersonResult],
                depth_in: DepthInput | None, up_from_scene: bool = True,
                all_segments_n4: np.ndarray | None = None) -> SceneResult:  # fmt: skip
    """Ground plane from the fitted people (`photo_ground`; `all_segments_n4` as there); with `depth_in`,
    its refinement into metres and the point cloud."""
    h, w = rgb_hw3.shape[:2]
    bodies = footed_bodies(people)
    ground = photo_ground(rgb_hw3, K_33, people, bodies, up_from_scene, all_segments_n4)
    scene = SceneResult(ground=ground)
    if depth_in is None:
        scene.notes.append(NO_DEPTH_NOTE)
        return scene
    scene.depth_source = depth_in.source
    if not bodies:
        scene.notes.append("No fitted person to scale the depth map by: the scene is left out.")
        return scene
    anchors_hw, masks_hw = person_anchors(people, K_33, w, h)
    ground_hw = None
    if ground is not None:
        far = max(float(np.linalg.norm(b.joints["left_hip"])) for b in bodies if "left_hip" in b.joints)
        ground_hw = ground.depth_hw(K_33, w, h, max_depth_m=MAX_GROUND_DEPTH_FACTOR * far)
    try:
        refined = refine_depth(depth_in.depth_hw, depth_in.kind, anchors_hw, ground_depth_m_hw=ground_hw,
                               exclude_ground_hw=masks_hw)  # fmt: skip
    except ValueError as err:
        scene.notes.append(f"The depth map could not be scaled by the people: {err}.")
        return scene
    scene.depth = refined
    scene.notes += refined.notes
    scene.points = backproject(refined.depth_m_hw, K_33, rgb_hw3, confidence_hw=depth_in.confidence_hw,
                               exclude_hw=masks_hw)  # fmt: skip
    return scene
