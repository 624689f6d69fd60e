"""Log pipeline results to Rerun with one small, fixed vocabulary of entity paths.

    world                                          ViewCoordinates RDF (static): world = OpenCV axes
    world/camera                                   Transform3D (world_T_cam) + Pinhole (K_33)
    world/camera/image                             the photo (JPEG) + 2D AnnotationContext (static)
    world/camera/image/people/{id}/mask            SegmentationImage, class id = id + 1 (0 = background)
    world/camera/image/people/{id}/bbox            Boxes2D
    world/camera/image/people/{id}/keypoints       Points2D, keypoint ids = index in PROMPTABLE_NAMES
    world/people                                   3D AnnotationContext (static)
    world/people/{id}/mesh                         Mesh3D in world coordinates, person colour
    world/people/{id}/skeleton                     Points3D, keypoint ids from `JointVocabulary`
    world/scene/..., world/ground                  the scene: point cloud, ground plane, up axis (viz.scene_log)

For a single image world = camera (world_T_cam is the identity). Every person `id` is AnnotationContext
class `id + 1`, with its colour and the keypoint names and links of its layer. A frame's data is
logged at time `frame` = frame_index; people seen in an earlier frame but not this one are cleared.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import rerun as rr

from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
from pipelines.keypoints import names
from pipelines.types import Camera, FrameResult, PersonResult
from viz.blueprint import default_blueprint
from viz.export import person_color, vertex_normals

APPLICATION_ID = "hmr-playground"
CAMERA_PATH = "world/camera"
DEPTH_PATH = f"{CAMERA_PATH}/depth"
"""Scene depth (metres) of the depth stage, when it ran."""
IMAGE_PATH = f"{CAMERA_PATH}/image"
PEOPLE_2D_PATH = f"{IMAGE_PATH}/people"
PEOPLE_3D_PATH = "world/people"
MASK_THRESHOLD = 0.5


def _all_links() -> list[tuple[str, str]]:
    links = list(names.BLAZEPOSE_LINKS)
    for side in ("left", "right"):
        links.append((f"{side}_wrist", f"{side}_hand_wrist"))
        links += names.hand_links(side)
    links += [link for link in names.COCO17_LINKS if link not in links]
    return links


LINKS: list[tuple[str, str]] = _all_links()


class JointVocabulary:
    """Append-only name -> keypoint id table: ids never change once given, so frames stay consistent.

    It starts with PROMPTABLE_NAMES (BlazePose, then both hands) so 2D and 3D ids agree for those
    names; names only a body model has (e.g. 'pelvis') are appended in the order first seen.
    """

    def __init__(self, initial: Sequence[str] = names.PROMPTABLE_NAMES) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}
        self.add(initial)

    def add(self, new_names: Iterable[str]) -> bool:
        """Register names; True when the table grew."""
        grew = False
        for name in new_names:
            if name not in self._ids:
                self._ids[name] = len(self.names)
                self.names.append(name)
                grew = True
        return grew

    def ids(self, query: Sequence[str]) -> np.ndarray:
        return np.array([self._ids[n] for n in query], dtype=np.uint16)

    def connections(self) -> list[tuple[int, int]]:
        return [(self._ids[a], self._ids[b]) for a, b in LINKS if a in self._ids and b in self._ids]


def annotation_context(person_ids: Iterable[int], vocab: JointVocabulary) -> rr.AnnotationContext:
    """The AnnotationContext of these people and joint names. Built once per distinct set and reused:
    its Arrow conversion (thousands of keypoint pairs, in Python) took ~0.15 s a photo."""
    return _annotation_context(tuple(sorted(set(person_ids))), tuple(vocab.names))


@functools.lru_cache(maxsize=16)
def _annotation_context(person_ids: tuple[int, ...], joint_names: tuple[str, ...]) -> rr.AnnotationContext:
    return rr.AnnotationContext(_class_descriptions(person_ids, JointVocabulary(list(joint_names))))


def _class_descriptions(person_ids: Iterable[int], vocab: JointVocabulary) -> list[rr.ClassDescription]:
    keypoints = [rr.AnnotationInfo(id=i, label=n) for i, n in enumerate(vocab.names)]
    connections = vocab.connections()
    out = [rr.ClassDescription(info=rr.AnnotationInfo(id=0, label="background", color=(0, 0, 0, 0)))]
    for pid in sorted(person_ids):
        info = rr.AnnotationInfo(id=pid + 1, label=f"person {pid}", color=person_color(pid))
        out.append(
            rr.ClassDescription(info=info, keypoint_annotations=keypoints, keypoint_connections=connections)
        )
    return out


def _to_world(world_T_cam_44: np.ndarray, pts_cam_n3: np.ndarray) -> np.ndarray:
    if np.allclose(world_T_cam_44, np.eye(4)):
        return np.asarray(pts_cam_n3, dtype=np.float32)
    return (pts_cam_n3 @ world_T_cam_44[:3, :3].T + world_T_cam_44[:3, 3]).astype(np.float32)


PRE_REGISTERED_PEOPLE = 16
"""Person ids 0..15 have their annotation classes from the start."""


class RerunLogger:
    """Streams one camera's frames into a recording, stage by stage or all at once."""

    def __init__(self, recording: rr.RecordingStream, *, jpeg_quality: int | None = 90) -> None:
        """`jpeg_quality` None logs raw pixels (exact, ~10x larger) instead of a JPEG."""
        self.rec = recording
        self.jpeg_quality = jpeg_quality
        # Everything the contexts may need is registered up front: the viewer stops honouring the
        # transparent background class when a static AnnotationContext is logged again mid-stream,
        # so it is re-logged only for a person id or joint name beyond these (rare).
        self.vocab_3d = JointVocabulary([*names.PROMPTABLE_NAMES, *OUTPUT_JOINT_NAMES])
        self._vocab_2d = JointVocabulary()
        self._known_ids: set[int] = set(range(PRE_REGISTERED_PEOPLE))
        self._det_ids: set[int] = set()
        self._body_ids: set[int] = set()
        self._world_T_cam_44 = np.eye(4)

    # -------------------------------------------------------------------------------------- setup

    def log_setup(self) -> None:
        """Static parts: world axes (OpenCV RDF) and the annotation contexts."""
        self.rec.log("world", rr.ViewCoordinates.RDF, static=True)
        self._log_contexts()

    def _log_contexts(self) -> None:
        ctx_2d = annotation_context(self._known_ids, self._vocab_2d)
        ctx_3d = annotation_context(self._known_ids, self.vocab_3d)
        self.rec.log(IMAGE_PATH, ctx_2d, static=True)
        self.rec.log(PEOPLE_3D_PATH, ctx_3d, static=True)

    def _register(self, people: Sequence[PersonResult]) -> None:
        grew = False
        for person in people:
            if person.id not in self._known_ids:
                self._known_ids.add(person.id)
                grew = True
            grew |= self._vocab_2d.add(person.detection.keypoints2d.names)
            if person.body is not None:
                grew |= self.vocab_3d.add(person.body.joints3d_cam.names)
        if grew:
            self._log_contexts()

    def set_frame(self, frame_index: int) -> None:
        self.rec.set_time("frame", sequence=int(frame_index))

    # ----------------------------------------------------------------------------------- per frame

    def log_image(self, frame_index: int, image_rgb_hw3: np.ndarray, camera: Camera) -> None:
        """Camera pose, intrinsics and the photo at time `frame_index`."""
        self.set_frame(frame_index)
        world_T_cam_44 = np.asarray(camera.world_T_cam, dtype=np.float64)
        self._world_T_cam_44 = world_T_cam_44
        transform = rr.Transform3D(translation=world_T_cam_44[:3, 3], mat3x3=world_T_cam_44[:3, :3])
        self.rec.log(CAMERA_PATH, transform)
        pinhole = rr.Pinhole(
            image_from_camera=np.asarray(camera.K_33, dtype=np.float32),
            resolution=[camera.width, camera.height],
            camera_xyz=rr.ViewCoordinates.RDF,
            image_plane_distance=0.5,
        )
        self.rec.log(CAMERA_PATH, pinhole)
        if self.jpeg_quality is None:
            self.rec.log(IMAGE_PATH, rr.Image(np.ascontiguousarray(image_rgb_hw3), color_model="RGB"))
        else:
            bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb_hw3), cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            if not ok:
                raise RuntimeError("JPEG encoding of the frame failed")
            self.rec.log(IMAGE_PATH, rr.EncodedImage(contents=buf.tobytes(), media_type="image/jpeg"))

    def _clear_gone(self, root: str, before: set[int], current: set[int]) -> set[int]:
        """Clear the people under `root` that were logged before but are gone now; return `current`."""
        for gone in before - current:
            self.rec.log(f"{root}/{gone}", rr.Clear(recursive=True))
        return current

    def log_detections(self, people: Sequence[PersonResult]) -> None:
        """Masks, boxes and 2D keypoints of the current frame; clears people no longer present."""
        self._register(people)
        self._det_ids = self._clear_gone(PEOPLE_2D_PATH, self._det_ids, {p.id for p in people})
        for person in people:
            det = person.detection
            base = f"{PEOPLE_2D_PATH}/{person.id}"
            cls = person.id + 1
            dtype = np.uint8 if cls < 256 else np.uint16
            if det.mask_hw is not None:  # a box-only detection has none
                seg_hw = (np.asarray(det.mask_hw) >= MASK_THRESHOLD).astype(dtype) * dtype(cls)
                self.rec.log(f"{base}/mask", rr.SegmentationImage(seg_hw, opacity=0.4))
            x0, y0, x1, y1 = (float(v) for v in det.bbox_xyxy)
            self.rec.log(
                f"{base}/bbox",
                rr.Boxes2D(
                    array=[x0, y0, x1, y1],
                    array_format=rr.Box2DFormat.XYXY,
                    class_ids=[cls],
                    labels=[f"person {person.id} ({det.score:.2f})"],
                ),
            )
            kp = det.keypoints2d
            xy_k2 = np.asarray(kp.xy_k2, dtype=np.float32)
            conf_k = np.asarray(kp.conf_k, dtype=np.float32)
            ok_k = np.isfinite(xy_k2).all(axis=1)
            ok_names = [n for n, good in zip(kp.names, ok_k, strict=True) if good]
            self.rec.log(
                f"{base}/keypoints",
                rr.Points2D(
                    xy_k2[ok_k],
                    class_ids=np.full(int(ok_k.sum()), cls, dtype=np.uint16),
                    keypoint_ids=self._vocab_2d.ids(ok_names),
                    radii=-3.0,  # negative radius = screen pixels (ui points)
                    show_labels=False,
                ),
            )
            if ok_k.any():  # a mask-only or box-only detection has no keypoints
                self.rec.log(f"{base}/keypoints", rr.AnyValues(confidence=conf_k[ok_k]))

    def log_bodies(self, people: Sequence[PersonResult]) -> None:
        """Meshes and 3D skeletons of the people with a body fit; clears those that lost theirs."""
        with_body = [p for p in people if p.body is not None]
        self._register(with_body)
        self._body_ids = self._clear_gone(PEOPLE_3D_PATH, self._body_ids, {p.id for p in with_body})
        for person in with_body:
            body = person.body
            assert body is not None
            base = f"{PEOPLE_3D_PATH}/{person.id}"
            verts_v3 = _to_world(self._world_T_cam_44, np.asarray(body.verts_cam_v3, dtype=np.float64))
            faces_f3 = np.asarray(body.faces_f3, dtype=np.int64)
            normals_v3 = vertex_normals(verts_v3.astype(np.float64), faces_f3).astype(np.float32)
            self.rec.log(
                f"{base}/mesh",
                rr.Mesh3D(
                    vertex_positions=verts_v3,
                    triangle_indices=faces_f3.astype(np.uint32),
                    vertex_normals=normals_v3,
                    albedo_factor=(*person_color(person.id), 255),
                ),
            )
            joints = body.joints3d_cam
            xyz_k3 = _to_world(self._world_T_cam_44, np.asarray(joints.xyz_k3, dtype=np.float64))
            self.rec.log(
                f"{base}/skeleton",
                rr.Points3D(
                    xyz_k3,
                    class_ids=np.full(len(xyz_k3), person.id + 1, dtype=np.uint16),
                    keypoint_ids=self.vocab_3d.ids(joints.names),
                    radii=0.015,
                    show_labels=False,
                ),
            )

    def log_depth(self, depth_hw: np.ndarray) -> None:
        """Scene depth in metres (NaN: unknown) under the camera, which Rerun back-projects in 3D."""
        depth = np.where(np.isfinite(depth_hw), depth_hw, 0.0).astype(np.float32)
        self.rec.log(DEPTH_PATH, rr.DepthImage(depth, meter=1.0))

    def log_frame(self, frame: FrameResult) -> None:
        """Everything of one frame: image, camera, detections, bodies and the scene depth (if any)."""
        self.log_image(frame.frame_index, frame.image_rgb_hw3, frame.camera)
        self.log_detections(frame.people)
        self.log_bodies(frame.people)
        if frame.depth is not None:
            self.log_depth(frame.depth.depth_hw)
        if frame.scene is not None:
            from viz.scene_log import log_scene

            log_scene(self.rec, frame.scene, self._world_T_cam_44)


def save_rrd(frame: FrameResult, path: str | Path, *, recording_id: str | None = None) -> Path:
    """Write one frame (with the default blueprint) to an .rrd file that the Rerun viewer opens."""
    path = Path(path)
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id or str(uuid.uuid4()))
    rec.save(path, default_blueprint=default_blueprint())  # must come before any log call
    logger = RerunLogger(rec)
    logger.log_setup()
    logger.log_frame(frame)
    rec.flush()
    rec.disconnect()  # closes the file sink, which writes the footer
    return path
