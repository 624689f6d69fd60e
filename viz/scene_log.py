"""Rerun logging of the scene around the people.

    world/scene/points        Points3D: the metric scene point cloud (photo colours)
    world/scene/ground        Mesh3D: a square of the ground plane under the people (translucent)
    world/scene/up            Arrows3D: the world's up axis (the ground's normal), 1 m, on the ground
    world/ground              Transform3D (the ground frame: z up, origin under the camera) + ViewCoordinates
                              RIGHT_HAND_Z_UP: a 3D view with this origin shows the world upright
"""

from __future__ import annotations

import numpy as np
import rerun as rr

SCENE_PATH = "world/scene"
GROUND_FRAME_PATH = "world/ground"
GROUND_HALF_SIZE_M = 3.0


def _to_world(world_T_cam_44: np.ndarray, pts_n3: np.ndarray) -> np.ndarray:
    return (pts_n3 @ world_T_cam_44[:3, :3].T + world_T_cam_44[:3, 3]).astype(np.float32)


def log_scene(rec: rr.RecordingStream, scene, world_T_cam_44: np.ndarray) -> None:  # noqa: ANN001 - SceneResult
    """Log `scene` (camera-frame data) into the world frame given by `world_T_cam_44`."""
    if scene.points is not None and len(scene.points.xyz_n3):
        rec.log(f"{SCENE_PATH}/points", rr.Points3D(_to_world(world_T_cam_44, scene.points.xyz_n3.astype(np.float64)),
                                                    colors=scene.points.rgb_n3, radii=0.01))  # fmt: skip
    ground = scene.ground
    if ground is None:
        return
    n = ground.normal_cam
    centre = ground.contacts_cam_n3.mean(axis=0)
    centre = centre - (n @ centre + ground.offset_m) * n  # on the plane
    ground_T_cam = ground.ground_T_cam()
    ex, ey = ground_T_cam[0, :3], ground_T_cam[1, :3]
    a = GROUND_HALF_SIZE_M
    corners = np.stack([centre + sx * a * ex + sy * a * ey for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    rec.log(f"{SCENE_PATH}/ground", rr.Mesh3D(vertex_positions=_to_world(world_T_cam_44, corners),
                                              triangle_indices=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
                                              albedo_factor=(120, 160, 120, 90)))  # fmt: skip
    origin = _to_world(world_T_cam_44, centre[None])
    up = (world_T_cam_44[:3, :3] @ n)[None].astype(np.float32)
    rec.log(f"{SCENE_PATH}/up", rr.Arrows3D(origins=origin, vectors=up, labels=["up"], colors=[(80, 200, 80)]))
    cam_T_ground = np.linalg.inv(ground_T_cam)
    world_T_ground = world_T_cam_44 @ cam_T_ground
    rec.log(GROUND_FRAME_PATH, rr.Transform3D(translation=world_T_ground[:3, 3], mat3x3=world_T_ground[:3, :3]))
    rec.log(GROUND_FRAME_PATH, rr.ViewCoordinates.RIGHT_HAND_Z_UP)
