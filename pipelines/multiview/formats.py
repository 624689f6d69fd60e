"""Camera-rig calibration files: read and write every format the multi-view mode accepts.

All formats are turned into `CalibratedCamera`s: metres, OpenCV camera frame (x right, y down,
z forward), X_cam = R X_world + t, pixels with the origin at the top-left corner, distortion in
OpenCV order (k1, k2, p1, p2, k3).

- project JSON (`*.json`, this project's own format, written by the multi-view mode):
  {"format": "hmr-playground-calibration", "version": 1, "units": ..., "convention": ...,
   "cameras": [{"name", "width", "height", "K_33", "dist_k": [k1, k2, p1, p2, k3],
                "R_33" (cam_R_world), "t_3" (cam_t_world, metres)}]}
- Qualisys `.qca.txt` (pipelines.multiview.calibration);
- Pose2Sim `Calib.toml`: per camera [section] name, size [w, h], matrix (K), distortions
  [k1, k2, p1, p2], rotation (Rodrigues vector, world -> camera), translation (metres);
- OpenCV / EasyMocap `intri.yml` + `extri.yml` (give either; the other is found beside it):
  names, K_<name>, dist_<name>; R_<name> (Rodrigues) or Rot_<name>, T_<name> (metres). No image size.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import tomllib

from pipelines.errors import UserFacingError
from pipelines.io.atomic import write_text_atomic
from pipelines.io.limits import check_calibration_file
from pipelines.multiview.calibration import CalibratedCamera, load_qualisys_calibration, make_camera

PROJECT_FORMAT = "hmr-playground-calibration"
UNITS = "metres (t_3); pixels (K_33, width, height); distortion: OpenCV k1 k2 p1 p2 k3"
CONVENTION = "X_cam = R_33 @ X_world + t_3; camera frame OpenCV (x right, y down, z forward); pixel origin top-left"


def _T(R_33: np.ndarray, t_3: np.ndarray) -> np.ndarray:
    T_44 = np.eye(4)
    T_44[:3, :3] = np.asarray(R_33, dtype=np.float64).reshape(3, 3)
    T_44[:3, 3] = np.asarray(t_3, dtype=np.float64).ravel()
    return T_44


def _check_rotation(R_33: np.ndarray, name: str, path: Path) -> None:
    if not np.allclose(R_33 @ R_33.T, np.eye(3), atol=1e-4) or np.linalg.det(R_33) < 0:
        raise UserFacingError(f"The calibration file {path.name} has a rotation for camera {name} that is not a "
                              "rotation.")


def load_calibration(path: str | Path) -> list[CalibratedCamera]:
    """Read a calibration in any supported format (chosen by the file's name and content). Any problem is a
    UserFacingError naming the file: a parser's own text never reaches the user."""
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"The calibration file {path} does not exist.")
    check_calibration_file(path)  # its size, before it is parsed
    name = path.name.lower()
    readers = {".json": ("project JSON", load_project_json), ".toml": ("Pose2Sim TOML", load_pose2sim_toml),
               ".yml": ("OpenCV YAML", load_opencv_yml), ".yaml": ("OpenCV YAML", load_opencv_yml),
               ".txt": ("Qualisys", load_qualisys_calibration), ".xml": ("Qualisys", load_qualisys_calibration)}
    suffix = next((s for s in readers if name.endswith(s)), None)
    if suffix is None:
        raise UserFacingError(f"The calibration file {path.name} has an unknown format: use the project's .json, "
                              "Qualisys .qca.txt, Pose2Sim Calib.toml or EasyMocap intri.yml / extri.yml.")  # fmt: skip
    kind, reader = readers[suffix]
    try:
        return reader(path)
    except UserFacingError:
        raise
    except Exception:  # noqa: BLE001 - a parser's text (KeyError 'x', ParseError...) is not for users
        raise UserFacingError(f"The calibration file {path.name} could not be read as a {kind} calibration: it is "
                              "damaged or in another format.") from None


# ------------------------------------------------------------------------------------- project JSON


def save_project_json(cams: list[CalibratedCamera], path: str | Path, extra: dict | None = None) -> Path:
    path = Path(path)
    doc = {"format": PROJECT_FORMAT, "version": 1, "units": UNITS, "convention": CONVENTION, **(extra or {}),
           "cameras": [{"name": c.name, "width": c.camera.width if c.size_known else None,
                        "height": c.camera.height if c.size_known else None,
                        "K_33": c.camera.K_33.tolist(), "dist_k": np.asarray(c.dist_k).tolist(),
                        "R_33": c.cam_T_world_44[:3, :3].tolist(), "t_3": c.cam_T_world_44[:3, 3].tolist()}
                       for c in cams]}  # fmt: skip
    return write_text_atomic(path, json.dumps(doc, indent=1))


def load_project_json(path: Path) -> list[CalibratedCamera]:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserFacingError(f"The calibration file {path.name} is not valid JSON.") from None
    if not isinstance(doc, dict) or doc.get("format") != PROJECT_FORMAT or not isinstance(doc.get("cameras"), list):
        raise UserFacingError(f"The calibration file {path.name} is not a {PROJECT_FORMAT} JSON file "
                              "(needs \"format\" and a \"cameras\" list).")  # fmt: skip
    cams = []
    for i, c in enumerate(doc["cameras"]):
        name = str(c.get("name", f"cam{i + 1:02d}"))
        try:
            K, R, t = np.array(c["K_33"], float), np.array(c["R_33"], float), np.array(c["t_3"], float)
            dist = np.array(c.get("dist_k", [0.0] * 5), float)
            if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
                raise ValueError
        except (KeyError, ValueError, TypeError):
            raise UserFacingError(f"The calibration file {path.name} has a bad or missing K_33 / R_33 / t_3 for "
                                  f"camera {name}.") from None  # fmt: skip
        _check_rotation(R, name, path)
        cams.append(make_camera(name, K, dist, _T(R, t), c.get("width"), c.get("height")))
    if not cams:
        raise UserFacingError(f"The calibration file {path.name} describes no camera.")
    return cams


# ------------------------------------------------------------------------------------ Pose2Sim TOML


def save_pose2sim_toml(cams: list[CalibratedCamera], path: str | Path) -> Path:
    def vec(v: np.ndarray) -> str:
        return "[ " + ", ".join(f"{float(x):.10g}" for x in np.ravel(v)) + "]"

    lines = []
    for c in cams:
        K = c.camera.K_33
        rvec = cv2.Rodrigues(c.cam_T_world_44[:3, :3])[0].ravel()
        lines += [f"[{c.name}]", f'name = "{c.name}"', f"size = {vec([c.camera.width, c.camera.height])}",
                  f"matrix = [ {vec(K[0])}, {vec(K[1])}, {vec(K[2])}]",
                  f"distortions = {vec(np.asarray(c.dist_k)[:4])}", f"rotation = {vec(rvec)}",
                  f"translation = {vec(c.cam_T_world_44[:3, 3])}", "fisheye = false", ""]  # fmt: skip
    lines += ["[metadata]", "adjusted = false", "error = 0.0", ""]
    return write_text_atomic(path, "\n".join(lines))


def load_pose2sim_toml(path: Path) -> list[CalibratedCamera]:
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise UserFacingError(f"The calibration file {path.name} is not valid TOML.") from None
    cams = []
    for key, sec in doc.items():
        if key == "metadata" or not isinstance(sec, dict):
            continue
        name = str(sec.get("name", key))
        try:
            K = np.array(sec["matrix"], float)
            R = cv2.Rodrigues(np.array(sec["rotation"], float).reshape(3, 1))[0]
            t = np.array(sec["translation"], float).reshape(3)
            dist = np.array(sec.get("distortions", [0.0] * 4), float)
            size = sec.get("size")
            w, h = (int(round(size[0])), int(round(size[1]))) if size else (None, None)
            if K.shape != (3, 3):
                raise ValueError
        except (KeyError, ValueError, TypeError, cv2.error):
            raise UserFacingError(f"The calibration file {path.name} has a bad or missing matrix / rotation / "
                                  f"translation for camera {name}.") from None  # fmt: skip
        if sec.get("fisheye"):
            raise UserFacingError(f"The calibration file {path.name}: camera {name} is a fisheye; not supported.")
        cams.append(make_camera(name, K, dist, _T(R, t), w, h))
    if not cams:
        raise UserFacingError(f"The calibration file {path.name} describes no camera.")
    return cams


# --------------------------------------------------------------------------- OpenCV / EasyMocap YAML


def _yml_pair(path: Path) -> tuple[Path, Path]:
    folder = path.parent
    intri, extri = folder / "intri.yml", folder / "extri.yml"
    if path.name.startswith("intri"):
        intri = path
    elif path.name.startswith("extri"):
        extri = path
    for p in (intri, extri):
        if not p.is_file():
            raise UserFacingError(f"The calibration {path.name} needs both intri.yml and extri.yml; {p.name} is "
                                  f"missing in {folder}.")  # fmt: skip
    return intri, extri


def _fs(path: Path) -> cv2.FileStorage:
    check_calibration_file(path)  # intri.yml and extri.yml alike
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error:
        fs = None
    if fs is None or not fs.isOpened():
        raise UserFacingError(f"The calibration file {path.name} is not an OpenCV YAML file.")
    return fs


def _names(fs: cv2.FileStorage) -> list[str]:
    node = fs.getNode("names")
    return [node.at(i).string() for i in range(node.size())] if not node.empty() else []


def load_opencv_yml(path: Path) -> list[CalibratedCamera]:
    intri_p, extri_p = _yml_pair(path)
    intri, extri = _fs(intri_p), _fs(extri_p)
    try:
        names = _names(intri) or _names(extri)
        if not names:
            raise UserFacingError(f"The calibration file {intri_p.name} has no 'names' list.")
        cams = []
        for name in names:
            K = intri.getNode(f"K_{name}").mat()
            dist = intri.getNode(f"dist_{name}").mat()
            rot = extri.getNode(f"Rot_{name}").mat()
            if rot is None:
                rvec = extri.getNode(f"R_{name}").mat()
                rot = None if rvec is None else cv2.Rodrigues(rvec.reshape(3, 1))[0]
            t = extri.getNode(f"T_{name}").mat()
            if K is None or rot is None or t is None:
                raise UserFacingError(f"The calibration {intri_p.name} / {extri_p.name} lacks K_{name}, R_{name} or "
                                      f"T_{name}.")  # fmt: skip
            _check_rotation(rot, name, extri_p)
            cams.append(make_camera(name, K, None if dist is None else dist.ravel(), _T(rot, t), None, None))
        return cams
    finally:
        intri.release()
        extri.release()


def save_opencv_yml(cams: list[CalibratedCamera], folder: str | Path) -> tuple[Path, Path]:
    folder = Path(folder)
    intri_p, extri_p = folder / "intri.yml", folder / "extri.yml"
    intri = cv2.FileStorage(str(intri_p), cv2.FILE_STORAGE_WRITE)
    extri = cv2.FileStorage(str(extri_p), cv2.FILE_STORAGE_WRITE)
    for fs in (intri, extri):
        fs.startWriteStruct("names", cv2.FILE_NODE_SEQ)
        for c in cams:
            fs.write("", c.name)
        fs.endWriteStruct()
    for c in cams:
        intri.write(f"K_{c.name}", c.camera.K_33)
        intri.write(f"dist_{c.name}", np.asarray(c.dist_k, np.float64).reshape(1, -1))
        R = c.cam_T_world_44[:3, :3]
        extri.write(f"R_{c.name}", cv2.Rodrigues(R)[0])
        extri.write(f"Rot_{c.name}", R)
        extri.write(f"T_{c.name}", c.cam_T_world_44[:3, 3].reshape(3, 1))
    intri.release()
    extri.release()
    return intri_p, extri_p


def save_qualisys(cams: list[CalibratedCamera], path: str | Path) -> Path:
    """Write a minimal Qualisys .qca.txt (the fields load_qualisys_calibration reads)."""
    flip = np.diag([1.0, -1.0, -1.0])

    def g(x: float) -> str:
        return repr(float(x))

    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<calibration>", "<cameras>"]
    for c in cams:
        R = c.cam_T_world_44[:3, :3]
        M = flip @ R
        C = -R.T @ c.cam_T_world_44[:3, 3] * 1000.0
        K = c.camera.K_33 * 64.0
        k1, k2, p1, p2, k3 = np.asarray(c.dist_k, float)[:5]
        rot = " ".join(f'r{i + 1}{j + 1}="{g(M[i, j])}"' for i in range(3) for j in range(3))
        w, h = c.camera.width, c.camera.height
        out += [f'<camera active="1" serial="{c.name}">',
                f'<fov_video left="0" top="0" right="{w - 1}" bottom="{h - 1}"/>',
                f'<transform x="{g(C[0])}" y="{g(C[1])}" z="{g(C[2])}" {rot}/>',
                f'<intrinsic focalLengthU="{g(K[0, 0])}" focalLengthV="{g(K[1, 1])}" centerPointU="{g(K[0, 2])}" '
                f'centerPointV="{g(K[1, 2])}" radialDistortion1="{g(k1)}" radialDistortion2="{g(k2)}" '
                f'radialDistortion3="{g(k3)}" tangentalDistortion1="{g(p1)}" tangentalDistortion2="{g(p2)}"/>',
                "</camera>"]  # fmt: skip
    out += ["</cameras>", "</calibration>", ""]
    return write_text_atomic(path, "\n".join(out))
