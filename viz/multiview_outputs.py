"""Write a processed multi-view capture into a folder, atomically (staged beside it, then moved).

Layout of `out_dir`:
    tracks.json        {"fps", "frames", "joint_names", "tracks": [{"id", "height_m", "frames",
                       "joints3d_world": per frame, per joint [x, y, z]}]}: metres, the calibration's world
                       frame; "frames" are indices of the reference (first) video, a track's frames those
                       where it has >= 12 joints (the others are null)
    report.json        {"median_reproj_px", "plain_median_reproj_px", "fused_fps", "views": [{"name",
                       "time_offset_frames", "median_reproj_px", "rotation_change_deg", "translation_change_m"}],
                       "warnings", "seconds"}
    calibration.json   the refined cameras, project JSON (pipelines.multiview.formats)
    track_<id>.trc     OpenSim markers (viz.trc: y up, metres)
    track_<id>.bvh     the skeleton's motion (viz.bvh: y up, metres)
    result.rrd         the Rerun recording (viz.multiview_log)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from pipelines.io.atomic import write_text_atomic
from pipelines.modes.multiview import MultiviewResult
from pipelines.multiview.formats import save_project_json
from pipelines.multiview.fuse import FUSED_JOINT_NAMES
from pipelines.multiview.skeleton import BONE_NAMES, PARENTS, skeleton_motion
from viz.bvh import write_bvh
from viz.outputs import commit_staging_dir, make_staging_dir
from viz.trc import write_trc

PSEUDO_CAM_T_WORLD_33 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""World (z up) -> the y-down frame viz.bvh expects as its 'camera' frame, so that BVH's y is world z."""


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def report_dict(result: MultiviewResult) -> dict:
    fusion = result.fusion
    n_frames = fusion.n_frames
    total_s = sum(result.seconds.values())
    views = []
    for v, cam in enumerate(fusion.cams):
        ref = fusion.refine
        views.append({"name": cam.name, "video": result.infos[v].path.name,
                      "used": bool(fusion.used_v[v]),
                      "time_offset_frames": _num(fusion.offsets_v[v]) if fusion.used_v[v] else None,
                      "median_reproj_px": _num(fusion.median_reproj_px_v[v]),
                      "rotation_change_deg": None if ref is None else _num(ref.rotation_change_deg_v[v]),
                      "translation_change_m": None if ref is None
                      else _num(ref.translation_change_m_v[v])})  # fmt: skip
    return {"median_reproj_px": _num(fusion.median_reproj_px),
            "plain_median_reproj_px": _num(fusion.plain_median_reproj_px),
            "fused_fps": _num(n_frames / total_s) if total_s > 0 else None,
            "n_frames": n_frames, "n_people": len(fusion.people),
            "reprojection": "median over the inlier keypoints (confidence >= 0.5) of every view, person and frame, "
                            "undistorted source pixels; plain = the given calibration, no time offsets, no refinement",
            "time_offset": "frames; a view's frame f + offset shows the instant of the first view's frame f",
            "views": views, "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "warnings": result.warnings}  # fmt: skip


def tracks_dict(result: MultiviewResult) -> dict:
    tracks = []
    for p in result.fusion.people:
        ok = p.frames_ok
        joints = [None if not ok[f] else [[_num(c) for c in xyz] for xyz in p.joints_fk3[f]]
                  for f in range(len(ok))]  # fmt: skip
        tracks.append({"id": p.id, "height_m": _num(p.height_m), "frames": np.flatnonzero(ok).tolist(),
                       "views": {result.fusion.cams[v].name: rows for v, rows in p.members.items()},
                       "joints3d_world": [joints[f] for f in np.flatnonzero(ok)]})  # fmt: skip
    return {"fps": result.fps, "frames": list(range(result.fusion.n_frames)), "joint_names": FUSED_JOINT_NAMES,
            "units": "metres", "frame": "world frame of the calibration", "tracks": tracks}  # fmt: skip


def write_outputs(result: MultiviewResult, out_dir: str | Path, *, rrd: bool = True) -> list[Path]:
    out_dir = Path(out_dir)
    tmp = make_staging_dir(out_dir)
    try:
        names = ["tracks.json", "report.json", "calibration.json"]
        write_text_atomic(tmp / "tracks.json", json.dumps(tracks_dict(result)))
        write_text_atomic(tmp / "report.json", json.dumps(report_dict(result), indent=1))
        save_project_json(result.fusion.cams, tmp / "calibration.json",
                          {"refined": result.fusion.refine is not None})  # fmt: skip
        for p in result.fusion.people:
            if not p.frames_ok.any():
                continue
            write_trc(tmp / f"track_{p.id}.trc", FUSED_JOINT_NAMES, p.joints_fk3, result.fps)
            motion = skeleton_motion(p.joints_fk3)
            write_bvh(tmp / f"track_{p.id}.bvh", BONE_NAMES, PARENTS, motion.rest_heads_b3,
                      PSEUDO_CAM_T_WORLD_33 @ motion.rot_world_fb33, motion.root_world_f3 @ PSEUDO_CAM_T_WORLD_33.T,
                      result.fps)  # fmt: skip
            names += [f"track_{p.id}.trc", f"track_{p.id}.bvh"]
        if rrd:
            from viz.multiview_log import save_multiview_rrd

            save_multiview_rrd(result, tmp / "result.rrd")
            names.append("result.rrd")
        commit_staging_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / n for n in names]
