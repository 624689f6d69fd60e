"""Calibrations of synchronised camera rigs (Qualisys .qca.txt XML, as written by Pose2Sim).

Conventions: metres; OpenCV camera frame (x right, y down, z forward); pixels with origin at the
top-left corner. The Qualisys file stores, per camera, a matrix M (r11..r33, row by row), the camera
centre C in millimetres (world z up), intrinsics in 1/64 pixel and Brown-Conrady distortion
k1 k2 k3 p1 p2. We read it as X_cam = R X_world + t with R = diag(1, -1, -1) M and t = -R C.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipelines.errors import UserFacingError
from pipelines.types import Camera

_QUALISYS_UNIT_PX = 64.0
"""Qualisys intrinsics are stored in 1/64 pixel."""
_FLIP_YZ_33 = np.diag([1.0, -1.0, -1.0])


@dataclass
class CalibratedCamera:
    """One camera of a calibrated rig."""

    name: str
    """Camera name from the file (Qualisys 'serial', e.g. 'cam01')."""
    camera: Camera
    """Pinhole intrinsics, image size and world_T_cam (the inverse of cam_T_world_44)."""
    dist_k: np.ndarray
    """Distortion coefficients in OpenCV order (k1, k2, p1, p2, k3)."""
    cam_T_world_44: np.ndarray
    """Maps world points (metres, z up) into this camera's OpenCV frame."""
    size_known: bool = True
    """False when the file gives no image size (EasyMocap): width/height are then guessed as 2 * (cx, cy)."""

    @property
    def P_34(self) -> np.ndarray:
        """Projection matrix K [R | t] for undistorted pixels."""
        return self.camera.K_33 @ self.cam_T_world_44[:3, :]

    @property
    def centre_world_3(self) -> np.ndarray:
        """Camera centre in world coordinates (metres)."""
        return self.camera.world_T_cam[:3, 3].copy()

    def to_cam(self, xyz_world_n3: np.ndarray) -> np.ndarray:
        """World points (N, 3) or one point (3,) in this camera's OpenCV frame (metres)."""
        return np.asarray(xyz_world_n3) @ self.cam_T_world_44[:3, :3].T + self.cam_T_world_44[:3, 3]

    def project_world(self, xyz_world_n3: np.ndarray) -> np.ndarray:
        """Project world points (N, 3) to undistorted pixels (N, 2) (points behind the camera are clipped
        to 1 um in front of it, as Camera.project does)."""
        return self.camera.project(self.to_cam(xyz_world_n3))


def make_camera(name: str, K_33: np.ndarray, dist_k: np.ndarray, cam_T_world_44: np.ndarray,
                width: int | None, height: int | None) -> CalibratedCamera:
    """A calibrated camera from its parts (metres, OpenCV frame); a missing size is guessed from the
    principal point (`size_known` False)."""
    K_33 = np.asarray(K_33, dtype=np.float64).reshape(3, 3)
    dist_k = np.zeros(5) if dist_k is None else np.asarray(dist_k, dtype=np.float64).ravel()
    dist_k = np.concatenate([dist_k, np.zeros(max(0, 5 - len(dist_k)))])
    cam_T_world_44 = np.asarray(cam_T_world_44, dtype=np.float64)
    known = width is not None and height is not None
    w = int(width) if known else int(round(2 * K_33[0, 2]))
    h = int(height) if known else int(round(2 * K_33[1, 2]))
    camera = Camera(K_33=K_33, width=w, height=h, source="user", world_T_cam=np.linalg.inv(cam_T_world_44), name=name)
    return CalibratedCamera(name=name, camera=camera, dist_k=dist_k, cam_T_world_44=cam_T_world_44, size_known=known)


def _bad(path: Path, what: str) -> UserFacingError:
    return UserFacingError(f"The calibration file {path.name} {what}.")


def _attr_float(element: ET.Element, key: str, cam_name: str, path: Path) -> float:
    value = element.get(key)
    if value is None:
        raise _bad(path, f"has no '{key}' for camera {cam_name}")
    try:
        out = float(value)
    except ValueError:
        raise _bad(path, f"has a non-numeric '{key}' ({value!r}) for camera {cam_name}") from None
    if not np.isfinite(out):
        raise _bad(path, f"has a non-finite '{key}' for camera {cam_name}")
    return out


def _image_size(camera_el: ET.Element, cam_name: str, path: Path) -> tuple[int, int]:
    fov = camera_el.find("fov_video")
    sides = ("left", "right", "top", "bottom")
    if fov is not None and all(fov.get(k) is not None for k in sides):
        left, right, top, bottom = (_attr_float(fov, k, cam_name, path) for k in sides)
        width, height = int(round(right - left)) + 1, int(round(bottom - top)) + 1
    else:
        intr = camera_el.find("intrinsic")
        assert intr is not None
        width = int(round(_attr_float(intr, "sensorMaxU", cam_name, path) / _QUALISYS_UNIT_PX))
        height = int(round(_attr_float(intr, "sensorMaxV", cam_name, path) / _QUALISYS_UNIT_PX))
    if width <= 0 or height <= 0:
        raise _bad(path, f"gives camera {cam_name} an empty image size")
    return width, height


def _parse_camera(camera_el: ET.Element, index: int, path: Path) -> CalibratedCamera:
    name = camera_el.get("serial") or f"cam{index + 1:02d}"
    transform = camera_el.find("transform")
    intr = camera_el.find("intrinsic")
    if transform is None or intr is None:
        missing = "transform" if transform is None else "intrinsic"
        raise _bad(path, f"has no <{missing}> element for camera {name}")

    M_33 = np.array([[_attr_float(transform, f"r{i}{j}", name, path) for j in (1, 2, 3)] for i in (1, 2, 3)])
    if not np.allclose(M_33 @ M_33.T, np.eye(3), atol=1e-4) or np.linalg.det(M_33) < 0:
        raise _bad(path, f"has a rotation matrix for camera {name} that is not orthonormal")
    centre_world_3 = np.array([_attr_float(transform, k, name, path) for k in ("x", "y", "z")]) / 1000.0
    R_33 = _FLIP_YZ_33 @ M_33
    cam_T_world_44 = np.eye(4)
    cam_T_world_44[:3, :3] = R_33
    cam_T_world_44[:3, 3] = -R_33 @ centre_world_3

    fx = _attr_float(intr, "focalLengthU", name, path) / _QUALISYS_UNIT_PX
    fy = _attr_float(intr, "focalLengthV", name, path) / _QUALISYS_UNIT_PX
    cx = _attr_float(intr, "centerPointU", name, path) / _QUALISYS_UNIT_PX
    cy = _attr_float(intr, "centerPointV", name, path) / _QUALISYS_UNIT_PX
    if fx <= 0 or fy <= 0:
        raise _bad(path, f"gives camera {name} a focal length that is not positive")
    K_33 = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    dist_keys = [f"radialDistortion{i}" for i in (1, 2, 3)] + [f"tangentalDistortion{i}" for i in (1, 2)]
    k1, k2, k3, p1, p2 = (_attr_float(intr, k, name, path) if k in intr.attrib else 0.0 for k in dist_keys)
    width, height = _image_size(camera_el, name, path)
    camera = Camera(
        K_33=K_33,
        width=width,
        height=height,
        source="user",
        world_T_cam=np.linalg.inv(cam_T_world_44),
        name=name,
    )
    return CalibratedCamera(
        name=name, camera=camera, dist_k=np.array([k1, k2, p1, p2, k3]), cam_T_world_44=cam_T_world_44
    )


def load_qualisys_calibration(path: str | Path) -> list[CalibratedCamera]:
    """Read every active camera of a Qualisys .qca.txt calibration, in file order."""
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"The calibration file {path} does not exist.")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, UnicodeDecodeError):
        raise _bad(path, "is not a valid Qualisys XML file") from None
    camera_els = root.findall("./cameras/camera")
    active_els = [el for el in camera_els if el.get("active", "1") not in ("0", "false")]
    cameras = [_parse_camera(el, i, path) for i, el in enumerate(active_els)]
    if not cameras:
        raise _bad(path, "describes no camera")
    return cameras


def undistort_points(xy_n2: np.ndarray, cam: CalibratedCamera) -> np.ndarray:
    """Remove lens distortion from pixel coordinates (N, 2); the result is in pixels of the same K."""
    xy_n2 = np.asarray(xy_n2, dtype=np.float64)
    if len(xy_n2) == 0:
        return xy_n2.reshape(0, 2)
    K_33 = cam.camera.K_33
    out = cv2.undistortPoints(xy_n2.reshape(-1, 1, 2), K_33, cam.dist_k, P=K_33)
    return out.reshape(-1, 2)


def distort_points(xy_n2: np.ndarray, cam: CalibratedCamera) -> np.ndarray:
    """Add lens distortion to undistorted pixel coordinates (N, 2) (inverse of undistort_points)."""
    xy_n2 = np.asarray(xy_n2, dtype=np.float64)
    K_33 = cam.camera.K_33
    xn_n2 = (xy_n2 - K_33[:2, 2]) / np.diag(K_33)[:2]
    xyz_n3 = np.concatenate([xn_n2, np.ones((len(xn_n2), 1))], axis=1)
    out, _ = cv2.projectPoints(xyz_n3.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K_33, cam.dist_k)
    return out.reshape(-1, 2)
