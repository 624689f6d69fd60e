"""Write every output of one frame into a folder, atomically: readers see the old folder or the new one.

Layout of `out_dir`:
    result.json        image, camera, prompts used, people (keypoints, joints, height, fit quality), timings, warnings,
                       backends (per stage: asked, used, why a hub backend fell back)
    result.rrd         the Rerun recording with the default blueprint
    overlay.png        the photo with the meshes and 2D keypoints drawn over it
    depth_metric.npy   the scene's depth in metres (with a depth source; see viz.scene_outputs)
    scene.ply          the scene's point cloud (with a depth source)
    person_<id>.glb    mesh per fitted person (glTF axes: y up, see viz.export)
    person_<id>.obj    the same mesh as OBJ
    person_<id>.npz    the body model parameters plus 'meta_json'
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipelines.errors import UserFacingError
from pipelines.io.atomic import process_umask, write_bytes_atomic
from pipelines.types import FrameResult, PersonResult, Prompts
from viz import export, scene_outputs

CAMERA_CONVENTION = "OpenCV: x right, y down, z forward; metres"
MESH_AXES = "glTF: x right, y up, z towards the viewer; metres; origin at the camera centre"
OVERLAY_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
                      cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]  # fmt: skip
"""The overlay's lossless PNG: the fast zlib level, one row filter (~1.5x faster than adaptive filtering,
same size) and Huffman coding only, no string matching (~1/3 less encoding time than level 1 alone, for
a ~15 % larger file: 3.7 MB against 3.2 MB for the 1280 x 1920 lunge overlay). Level 0 (stored) encodes
~10x faster but the file is 2.3x larger (7.4 MB)."""


def _person_entry(person: PersonResult, files: dict[str, str] | None) -> dict[str, Any]:
    det = person.detection
    entry: dict[str, Any] = {
        "id": person.id,
        "bbox_xyxy": [float(v) for v in det.bbox_xyxy],
        "score": float(det.score),
        "keypoints2d": det.keypoints2d.as_dict(),
        "joints3d_cam": {},
        "height_m": None,
        "body": None,
        "fit": None,
    }
    body = person.body
    if body is not None:
        entry["joints3d_cam"] = {
            n: [float(v) for v in xyz]
            for n, xyz in zip(body.joints3d_cam.names, body.joints3d_cam.xyz_k3, strict=True)
        }
        entry["height_m"] = float(body.height_m)
        entry["body"] = {"model": body.model, "mesh_axes": MESH_AXES, **(files or {})}
        entry["fit"] = {
            "reprojection_px_mean": float(body.reprojection_px_mean),
            "reprojection_px_max": float(body.reprojection_px_max),
            "per_keypoint_px": {k: float(v) for k, v in body.per_keypoint_px.items()},
        }
    return entry


def _prompts_entry(prompts: Prompts) -> dict[str, Any]:
    """The prompts a result was computed with, in image pixels."""
    points_n3 = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
    return {
        "points": [[float(x), float(y), int(label)] for x, y, label in points_n3],
        "box_xyxy": None if prompts.box_xyxy is None else [float(v) for v in np.reshape(prompts.box_xyxy, -1)],
        "keypoints": {name: [float(x), float(y)] for name, (x, y) in prompts.keypoints.items()},
    }


def result_dict(
    frame: FrameResult, image_path: str | Path | None, person_files: dict[int, dict[str, str]]
) -> dict[str, Any]:
    """The content of result.json (see the module docstring)."""
    cam = frame.camera
    height, width = frame.image_rgb_hw3.shape[:2]
    return {
        "image": {"path": None if image_path is None else str(image_path), "width": width, "height": height},
        "camera": {
            "K_33": cam.K_33.tolist(),
            "focal_px": cam.focal_px,
            "source": cam.source,
            "hfov_deg": cam.hfov_deg,
            "world_T_cam": cam.world_T_cam.tolist(),
            "convention": CAMERA_CONVENTION,
        },
        "prompts": _prompts_entry(frame.prompts),
        "people": [_person_entry(p, person_files.get(p.id)) for p in frame.people],
        "ground": scene_outputs.ground_entry(frame),
        "scene": scene_outputs.scene_entry(frame),
        "timings_s": dict(frame.timings_s),
        "warnings": list(frame.warnings),
        "backends": {stage: {"asked": u.asked, "used": u.used, "fallback_reason": u.reason}
                     for stage, u in frame.backends.items()},  # fmt: skip
    }


def _write_overlay(path: Path, frame: FrameResult) -> None:
    """The overlay as a lossless PNG (OpenCV's encoder, OVERLAY_PNG_PARAMS; it releases the GIL)."""
    overlay_rgb_hw3 = export.render_overlay(frame.image_rgb_hw3, frame.camera, frame.people)
    ok, png = cv2.imencode(".png", cv2.cvtColor(overlay_rgb_hw3, cv2.COLOR_RGB2BGR), OVERLAY_PNG_PARAMS)
    if not ok:
        raise OSError(f"could not encode {path}")
    write_bytes_atomic(path, png.tobytes())


def _write_all(tmp: Path, frame: FrameResult, image_path: str | Path | None, write_rrd: bool) -> list[str]:
    # Independent files in parallel: the overlay (rasterising and PNG encoding release the GIL) and the
    # recording (rerun encodes and writes in its own threads) each in a worker thread, while the meshes,
    # the parameters and the JSON are written here.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="write-outputs") as pool:
        overlay = pool.submit(_write_overlay, tmp / "overlay.png", frame)
        recording = pool.submit(_write_rrd, tmp / "result.rrd", frame) if write_rrd else None
        names = _write_rest(tmp, frame, image_path)
        workers = [overlay] if recording is None else [overlay, recording]
        errors = [err for err in (w.exception() for w in workers) if err is not None]
        for err in errors[1:]:  # the first is raised; a second writer's failure is not lost silently
            logging.getLogger(__name__).error("another output writer failed too: %r", err)
        if errors:
            raise errors[0]
        if recording is not None:
            names.insert(names.index("result.json"), "result.rrd")
    return [*names, "overlay.png"]


def _write_rrd(path: Path, frame: FrameResult) -> None:
    from viz.rerun_log import save_rrd  # rerun (~0.5 s to import) only when a recording is written

    save_rrd(frame, path)


def _write_rest(tmp: Path, frame: FrameResult, image_path: str | Path | None) -> list[str]:
    names: list[str] = []
    person_files: dict[int, dict[str, str]] = {}
    for person in frame.people:
        body = person.body
        if body is None:
            continue
        color = export.person_color(person.id)
        files = {
            "params_file": f"person_{person.id}.npz",
            "mesh_glb": f"person_{person.id}.glb",
            "mesh_obj": f"person_{person.id}.obj",
        }
        meta = {
            "person_id": person.id,
            "model": body.model,
            "height_m": body.height_m,
            "camera_K_33": frame.camera.K_33,
            "image_size_wh": [frame.camera.width, frame.camera.height],
            "convention": CAMERA_CONVENTION,
        }
        export.save_params_npz(tmp / files["params_file"], body.params, meta)
        export.export_mesh_glb(tmp / files["mesh_glb"], body.verts_cam_v3, body.faces_f3, color)
        export.export_mesh_obj(tmp / files["mesh_obj"], body.verts_cam_v3, body.faces_f3, color)
        names += [files["params_file"], files["mesh_glb"], files["mesh_obj"]]
        person_files[person.id] = files

    names += scene_outputs.write_scene_files(tmp, frame)
    export.write_json(tmp / "result.json", result_dict(frame, image_path, person_files))
    names.append("result.json")
    return names


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move `tmp` to `out_dir`; an existing `out_dir` is kept until the new one is in place."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    backup = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out_dir, backup)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(backup, out_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def make_staging_dir(out_dir: str | Path) -> Path:
    """A new hidden folder beside `out_dir` to write into, with the usual permissions; pair with
    `commit_staging_dir` (or remove it on failure)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserFacingError(f"The output path {out_dir} exists and is not a folder.")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as err:
        blocker = next((a for a in out_dir.parents if a.exists()), None)
        if blocker is not None and not blocker.is_dir():  # a file where a folder of the path should be
            raise UserFacingError(f"Cannot write into {out_dir}: {blocker} is a file, not a folder.") from err
        raise UserFacingError(f"Cannot write into {out_dir.parent}: {err.strerror or err}.") from err
    os.chmod(tmp, 0o777 & ~process_umask())
    return tmp


def check_out_dir(out_dir: str | Path) -> None:
    """Raise UserFacingError (one sentence) now when `out_dir` cannot be written, before a long run whose
    outputs are written only at its end; leaves nothing behind but the parent folders."""
    os.rmdir(make_staging_dir(out_dir))


def commit_staging_dir(tmp: Path, out_dir: str | Path) -> None:
    """Move the staging folder into place as `out_dir` (an existing one is replaced only now)."""
    _replace_dir(tmp, Path(out_dir))


def write_outputs(
    out_dir: str | Path, frame: FrameResult, *, image_path: str | Path | None = None, write_rrd: bool = True
) -> list[Path]:
    """Write all outputs of `frame` to `out_dir` (replaced as a whole); return the written files.

    The files are written to a hidden sibling folder first and renamed into place at the end. If
    anything fails, the temporary folder is removed and an existing `out_dir` is left untouched.
    """
    out_dir = Path(out_dir)
    tmp = make_staging_dir(out_dir)
    try:
        names = _write_all(tmp, frame, image_path, write_rrd)
        _replace_dir(tmp, out_dir)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserFacingError(f"Writing the outputs to {out_dir} failed ({err.strerror or err}); "
                              "nothing was changed there.") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / n for n in names]
