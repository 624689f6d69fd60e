"""Log a fused multi-view capture to Rerun.

    world                                    the calibration's world frame (z up, metres)
    world/cams/{name}                        Transform3D (camera pose, refined) + Pinhole (static)
    world/cams/{name}/image                  AssetVideo (static) + VideoFrameReference per frame (the view's own
                                             frame: grid frame + its time offset)
    world/cams/{name}/image/detected/{id}    the view's keypoints of person id (raw pixels)
    world/cams/{name}/image/fused/{id}       the fused skeleton reprojected into the view (with distortion)
    world/people/{id}/skeleton               fused 3D joints per frame
    reproj/{name}                            per-view median reprojection error (px) as a time series

Timelines: `frame` (the first video's frame index) and `video_time` (seconds). Keypoint names and
links come from one AnnotationContext (class id = person id + 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rerun as rr

from pipelines.keypoints.names import BLAZEPOSE_LINKS
from pipelines.modes.multiview import MultiviewResult
from pipelines.multiview.calibration import distort_points
from pipelines.multiview.fuse import FUSED_JOINT_NAMES
from viz.export import person_color
from viz.rerun_log import APPLICATION_ID

_LINKS = [(FUSED_JOINT_NAMES.index(a), FUSED_JOINT_NAMES.index(b)) for a, b in BLAZEPOSE_LINKS
          if a in FUSED_JOINT_NAMES and b in FUSED_JOINT_NAMES]  # fmt: skip


def save_multiview_rrd(result: MultiviewResult, path: str | Path) -> Path:
    fusion = result.fusion
    rec = rr.RecordingStream(APPLICATION_ID)
    rec.save(str(path))
    kp = [rr.AnnotationInfo(id=i, label=n) for i, n in enumerate(FUSED_JOINT_NAMES)]
    classes = [rr.ClassDescription(info=rr.AnnotationInfo(id=p.id + 1, label=f"person {p.id}",
                                                          color=person_color(p.id)),
                                   keypoint_annotations=kp, keypoint_connections=_LINKS)
               for p in fusion.people]  # fmt: skip
    rec.log("/", rr.AnnotationContext(classes), static=True)
    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    timestamps: list[np.ndarray | None] = []
    for v, cam in enumerate(fusion.cams):
        base = f"world/cams/{cam.name}"
        R = cam.cam_T_world_44[:3, :3]
        rec.log(base, rr.Transform3D(translation=cam.centre_world_3, mat3x3=R.T), static=True)
        rec.log(base, rr.Pinhole(image_from_camera=cam.camera.K_33, resolution=[cam.camera.width, cam.camera.height],
                                 camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.4), static=True)  # fmt: skip
        try:
            video = rr.AssetVideo(path=str(result.infos[v].path))
            timestamps.append(np.asarray(video.read_frame_timestamps_nanos(), dtype=np.int64))
            rec.log(f"{base}/image", video, static=True)
        except Exception:  # noqa: BLE001 - a container Rerun cannot read: the view is drawn without its video
            timestamps.append(None)
    ids = np.arange(len(FUSED_JOINT_NAMES))
    for f in range(fusion.n_frames):
        rec.set_time("frame", sequence=f)
        rec.set_time("video_time", duration=f / result.fps)
        for v, cam in enumerate(fusion.cams):
            base = f"world/cams/{cam.name}/image"
            own = int(round(f + fusion.offsets_v[v]))
            ts = timestamps[v]
            if ts is not None and 0 <= own < len(ts):
                rec.log(base, rr.VideoFrameReference(nanoseconds=int(ts[own])))
            err = fusion.reproj_px_vf[v, f]
            if np.isfinite(err):
                rec.log(f"reproj/{cam.name}", rr.Scalars(float(err)))
            for p, raw in zip(fusion.people, fusion.obs_xy_pvfk2, strict=True):
                det = raw[v, f]
                ok = np.isfinite(det).all(-1)
                rec.log(f"{base}/detected/{p.id}", rr.Points2D(det[ok], class_ids=p.id + 1, keypoint_ids=ids[ok],
                                                               radii=-2.0))  # fmt: skip
                xyz = p.joints_fk3[f]
                ok3 = np.isfinite(xyz).all(-1)
                if ok3.any():
                    xy = np.full((len(xyz), 2), np.nan)
                    xy[ok3] = distort_points(cam.project_world(xyz[ok3]), cam)
                    rec.log(f"{base}/fused/{p.id}", rr.Points2D(xy[ok3], class_ids=p.id + 1, keypoint_ids=ids[ok3],
                                                                radii=-4.0))  # fmt: skip
        for p in fusion.people:
            xyz = p.joints_fk3[f]
            ok3 = np.isfinite(xyz).all(-1)
            rec.log(f"world/people/{p.id}/skeleton", rr.Points3D(xyz[ok3], class_ids=p.id + 1, keypoint_ids=ids[ok3],
                                                                 radii=0.02))  # fmt: skip
    rec.flush()
    rec.disconnect()
    return Path(path)
