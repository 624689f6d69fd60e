"""SAM 3D Body (hmr hub backend): the official code cannot run here (it imports torchvision, which CPU
torch cannot load, and is not on PyPI), so these tests check what can be checked without it: the
clear message and the fallback, and, with a stand-in estimator that answers like the official
SAM3DBodyEstimator.process_one_image (its output dict), the mapping into the project's types, the
pipeline, the exports and the keypoint prompts refined by the embedded fit."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines import hub
from pipelines.body.params import MHRParams
from pipelines.hmr.hub_sam3d import map_output
from pipelines.io.image_io import LoadedImage, load_image
from pipelines.keypoints.names import COCO17_NAMES
from pipelines.modes.image import ImagePipeline, PipelineConfig
from pipelines.types import Camera, PersonDetection, Prompts
from viz.outputs import write_outputs

NAMES = [*COCO17_NAMES, "left_foot_index", "right_foot_index", "neck"]
NAMES += [f"extra_{i}" for i in range(70 - len(NAMES))]
# Where each keypoint sits in a standing person's box (x, y fractions), for the stand-in estimator
_LAYOUT = {
    "nose": (0.5, 0.06), "left_eye": (0.53, 0.05), "right_eye": (0.47, 0.05), "left_ear": (0.57, 0.06),
    "right_ear": (0.43, 0.06), "left_shoulder": (0.65, 0.2), "right_shoulder": (0.35, 0.2), "left_elbow": (0.7, 0.35),
    "right_elbow": (0.3, 0.35), "left_wrist": (0.72, 0.48), "right_wrist": (0.28, 0.48), "left_hip": (0.58, 0.52),
    "right_hip": (0.42, 0.52), "left_knee": (0.6, 0.74), "right_knee": (0.4, 0.74), "left_ankle": (0.6, 0.95),
    "right_ankle": (0.4, 0.95), "left_foot_index": (0.63, 0.99), "right_foot_index": (0.37, 0.99), "neck": (0.5, 0.17),
}  # fmt: skip


class StandInEstimator:
    """Answers like SAM3DBodyEstimator.process_one_image: a body laid out in the given box at 4 m."""

    def __init__(self, flip_y: bool = False, keypoints_px: dict[str, np.ndarray] | None = None) -> None:
        """`keypoints_px`: where its 2D keypoints are (else laid out in the box)."""
        self.faces = np.array([[0, 1, 2], [2, 3, 4]])
        self.flip_y = flip_y
        self.keypoints_px = keypoints_px or {}
        self.calls: list[dict[str, object]] = []

    def process_one_image(self, img: np.ndarray, bboxes: np.ndarray, masks: np.ndarray | None = None,
                          cam_int: np.ndarray | None = None, use_mask: bool = False) -> list[dict]:  # fmt: skip
        self.calls.append({"shape": img.shape, "bboxes": bboxes, "masks": masks, "cam_int": cam_int})
        x0, y0, x1, y1 = bboxes[0]
        uv = np.array([_LAYOUT.get(n, (0.5, 0.5)) for n in NAMES]) * [x1 - x0, y1 - y0] + [x0, y0]
        for i, name in enumerate(NAMES):
            if name in self.keypoints_px:
                uv[i] = self.keypoints_px[name]
        K = cam_int[0]
        X = 4.0 * (np.linalg.inv(K) @ np.c_[uv, np.ones(len(uv))].T).T
        cam_t = X.mean(axis=0)
        kp3d = X - cam_t
        verts = np.repeat(kp3d, 10, axis=0) + np.random.default_rng(0).normal(0, 0.02, (700, 3))
        if self.flip_y:  # an OpenGL-style output (y up): not what the backend expects
            kp3d, verts = kp3d * [1, -1, 1], verts * [1, -1, 1]
        return [{"bbox": bboxes[0], "focal_length": np.float32(K[0, 0]), "pred_keypoints_3d": np.vstack([kp3d, kp3d]),
                 "pred_keypoints_2d": np.vstack([uv, uv]), "pred_vertices": verts, "pred_cam_t": cam_t,
                 "shape_params": np.zeros(45), "mhr_model_params": np.zeros(204), "expr_params": np.zeros(72),
                 "scale_params": np.zeros(28)}]  # fmt: skip


def test_without_the_official_code_it_says_what_to_install_and_falls_back() -> None:
    with pytest.raises(hub.HubUnavailable, match="SAM 3D Body") as info:
        from pipelines.registry import create

        create("hmr", "hub")
    assert "torchvision" in str(info.value) or "sam-3d-body" in str(info.value)
    pipe = ImagePipeline(PipelineConfig(hmr="hub"))
    pipe._get("hmr")
    use = pipe.backend_uses()["hmr"]
    assert (use.asked, use.used) == ("hub", "embedded") and "SAM 3D Body" in use.reason


def test_offline_checkpoint_names_the_gated_repo(offline_hf_cache: Path) -> None:
    from pipelines.hmr.hub_sam3d import checkpoint_paths

    with pytest.raises(hub.HubUnavailable, match=r"model.ckpt of facebook/sam-3d-body-dinov3.*HF_HUB_OFFLINE=1"):
        checkpoint_paths()


def test_output_mapping_to_the_camera_frame() -> None:
    camera = Camera.from_focal(900.0, 640, 480, "user")
    est = StandInEstimator()
    out = est.process_one_image(np.zeros((480, 640, 3), np.uint8), np.array([[250.0, 40.0, 390.0, 440.0]]),
                                cam_int=camera.K_33[None])[0]  # fmt: skip
    body = map_output(out, camera, est.faces, NAMES)
    assert body.model == "mhr" and isinstance(body.params, MHRParams)
    assert np.allclose(body.verts_cam_v3, out["pred_vertices"] + out["pred_cam_t"])
    assert set(COCO17_NAMES) <= set(body.joints3d_cam.names) and body.joints3d_cam.frame == "cam"
    nose = body.joints3d_cam.xyz_k3[body.joints3d_cam.names.index("nose")]
    assert nose[2] == pytest.approx(4.0) and camera.project(nose[None])[0] == pytest.approx(out["pred_keypoints_2d"][0])
    assert 1.0 < body.height_m < 3.0  # the stand-in's 400 px tall box at 4 m with f = 900 px: ~1.8 m
    flipped = StandInEstimator(flip_y=True).process_one_image(np.zeros((480, 640, 3), np.uint8),
                                                              np.array([[250.0, 40.0, 390.0, 440.0]]),
                                                              cam_int=camera.K_33[None])[0]  # fmt: skip
    with pytest.raises(hub.HubUnavailable, match="not in the expected camera frame"):
        map_output(flipped, camera, est.faces, NAMES)


def test_pipeline_with_sam3d_and_keypoint_prompts(pipeline: ImagePipeline, lunge_path: Path, tmp_path: Path) -> None:
    rgb = cv2.resize(load_image(lunge_path).rgb_hw3, (400, 600), interpolation=cv2.INTER_AREA)
    image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    # A stand-in that agrees with the detector on the 2D keypoints (as a good model would)
    kp = pipeline._get("segmentation").detect(rgb)[0].keypoints2d
    est = StandInEstimator(keypoints_px={n: xy for n, xy in zip(kp.names, kp.xy_k2, strict=True) if n in NAMES})
    config = PipelineConfig(hmr="hub", hub_options={"hmr": {"estimator": est, "names": NAMES}})
    pipe = ImagePipeline(config, models=pipeline.models)  # the warm embedded models, SAM 3D Body stand-in
    result = pipe.run(image)
    person = result.people[0]
    assert person.body is not None and person.body.model == "mhr"
    call = est.calls[-1]
    assert call["shape"] == rgb.shape and call["masks"].shape == (1, 600, 400)  # box, mask and K_33 in
    assert np.allclose(call["cam_int"][0], result.camera.K_33)
    assert result.backends["hmr"].used == "hub"
    write_outputs(tmp_path / "out", result, image_path=None, write_rrd=True)
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["people"][0]["body"]["model"] == "mhr"
    assert np.load(tmp_path / "out" / "person_0.npz")["model_params"].shape == (204,)

    wrist = np.array(person.body.joints3d_cam.xyz_k3[person.body.joints3d_cam.names.index("left_wrist")])
    wrist_px = result.camera.project(wrist[None])[0]
    prompt = (float(wrist_px[0] + 10), float(wrist_px[1] - 6))
    refined = pipe.run(image, prompts=Prompts(keypoints={"left_wrist": prompt}))
    body = refined.people[0].body
    assert body is not None and body.model == "anny"  # SAM 3D Body cannot take it: the embedded fit did
    moved = refined.camera.project(body.joints3d_cam.xyz_k3[[body.joints3d_cam.names.index("left_wrist")]])[0]
    assert np.linalg.norm(moved - prompt) < 0.75 * np.linalg.norm(wrist_px - prompt)
    assert body.per_keypoint_px["left_wrist"] < 5.0  # the prompt is met by the fitted wrist point (pixels)


class _BoxOnlyDetector:
    """A segmentation stage that finds one person as a box and a mask, without landmarks (as SAM2 alone)."""

    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        h, w = rgb.shape[:2]
        mask_hw = np.zeros((h, w), np.float32)
        mask_hw[100:500, 150:250] = 1.0
        return [PersonDetection(bbox_xyxy=np.array([150.0, 100.0, 250.0, 500.0]), score=0.9, mask_hw=mask_hw)]

    def apply_prompts(self, rgb: np.ndarray, people: list[PersonDetection], prompts: Prompts) -> list[PersonDetection]:
        return list(people)


def test_a_mask_only_detection_gets_a_sam3d_body(pipeline: ImagePipeline) -> None:
    config = PipelineConfig(hmr="hub", hub_options={"hmr": {"estimator": StandInEstimator(), "names": NAMES}})
    pipe = ImagePipeline(config, models=pipeline.models)
    pipe._backends["segmentation"] = _BoxOnlyDetector()
    rgb = np.full((600, 400, 3), 120, np.uint8)
    result = pipe.run(LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[]))
    (person,) = result.people
    assert not person.detection.has_landmarks
    assert person.body is not None and person.body.model == "mhr"  # no keypoints needed: box and mask in
    assert person.body.verts_cam_v3[:, 2].min() > 0


class _NoBodyEstimator(StandInEstimator):
    """SAM 3D Body that finds no body in the box (e.g. a poster or a false detection)."""

    def process_one_image(self, img: np.ndarray, bboxes: np.ndarray, masks: np.ndarray | None = None,
                          cam_int: np.ndarray | None = None, use_mask: bool = False) -> list[dict]:  # fmt: skip
        self.calls.append({"bboxes": bboxes})
        return []


def test_no_body_in_one_box_is_a_note_and_the_stage_stays_on_the_hub(pipeline: ImagePipeline) -> None:
    est = _NoBodyEstimator()
    pipe = ImagePipeline(PipelineConfig(hmr="hub", hub_options={"hmr": {"estimator": est, "names": NAMES}}),
                         models=pipeline.models)  # fmt: skip
    pipe._backends["segmentation"] = _BoxOnlyDetector()
    image = LoadedImage(rgb_hw3=np.full((600, 400, 3), 120, np.uint8), path=None, exif_focal_px=None,
                        exif_note=None, warnings=[])  # fmt: skip
    for _ in range(2):  # a second photo still goes to SAM 3D Body: no fallback to the embedded fit
        result = pipe.run(image)
        (person,) = result.people
        assert person.body is None
        assert any("Person 0: The SAM 3D Body backend found no body in the person's box [150, 100, 250, 500]" in w
                   for w in result.warnings)  # fmt: skip
        assert result.backends["hmr"].used == "hub" and result.backends["hmr"].reason is None
    assert len(est.calls) == 2
