"""The multi-view keypoint stage's cheaper pieces keep their results: crops cut with the exact 2:1 halving
land where the region's geometry says (the default halving of an odd window does not), the landmark
tracker's empty mask gives the box a dense one gives, and the per-view models run on one thread each on a
2-core machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.segmentation.embedded import bbox_from
from pipelines.segmentation.roi import RotatedRect, crop_region


def _blob_offsets_px(even_halving: bool) -> np.ndarray:
    """Distance (image pixels) between where 3 small blobs land in a 256 px crop of a 557 px region and
    where the region's affine map puts them; the frame is 541 px wide, so the region's window is odd."""
    h, w = 961, 541
    rect = RotatedRect((270.3, 480.7), 557.0, 0.0)
    pts_n2 = np.array([[470.0, 700.0], [120.0, 300.0], [400.0, 350.0]])
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    image_hw3 = np.zeros((h, w, 3), np.uint8)
    for p in pts_n2:
        blob_hw = 255 * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 4.0**2))
        image_hw3[..., 1] = np.maximum(image_hw3[..., 1], blob_hw.astype(np.uint8))
    M_23 = rect.img_from_crop_23(256)
    expected_n2 = (pts_n2 - M_23[:, 2]) @ np.linalg.inv(M_23[:, :2]).T
    crop_hw = crop_region(image_hw3, rect, 256, even_halving=even_halving)[..., 1].astype(np.float64)
    cy, cx = np.mgrid[0:256, 0:256] + 0.5
    out = []
    for e in expected_n2:
        weight_hw = ((cx - e[0]) ** 2 + (cy - e[1]) ** 2 < 8**2) * crop_hw
        centroid = np.array([(weight_hw * cx).sum(), (weight_hw * cy).sum()]) / weight_hw.sum()
        out.append(np.linalg.norm(centroid - e) * rect.size_px / 256)
    return np.array(out)


def test_even_halving_crop_keeps_the_region_geometry() -> None:
    even, default = _blob_offsets_px(True), _blob_offsets_px(False)
    assert even.max() < 0.1  # the exact 2:1 halving: where the map says
    assert default.max() > 0.5  # 541 -> 270 px is a ratio of 2.004: pulled towards the window's corner


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_bbox_from_a_broadcast_mask_is_the_dense_masks_box(value: float) -> None:
    xy_k2 = np.array([[100.0, 50.0], [300.0, 400.0], [250.0, 700.0]])
    conf_k = np.array([0.9, 0.8, 0.2])
    broadcast_hw = np.broadcast_to(np.float32(value), (540, 960))
    dense_hw = np.full((540, 960), value, np.float32)
    np.testing.assert_array_equal(bbox_from(broadcast_hw, xy_k2, conf_k), bbox_from(dense_hw, xy_k2, conf_k))
    if value == 0.0:  # the keypoints' box alone (the third is unsure)
        np.testing.assert_array_equal(bbox_from(broadcast_hw, xy_k2, conf_k), [100.0, 50.0, 300.0, 400.0])


def test_view_detectors_use_one_model_thread_per_view_on_two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai_edge_litert")
    from pipelines.multiview import views2d
    from pipelines.tracking.landmark_tracking import LandmarkTrackingDetector

    made: list[LandmarkTrackingDetector] = []
    original = views2d.make_view_detector

    def spy(kind: str = "tracking", max_people: int = 4, model_threads: int | None = None,
            skip_motion: float | None = None, skip_span: int = 2) -> object:  # fmt: skip
        det = original(kind, max_people, model_threads, skip_motion, skip_span)
        made.append(det)
        raise RuntimeError("stop before decoding")

    monkeypatch.setattr(views2d, "make_view_detector", spy)
    monkeypatch.setattr(views2d.os, "cpu_count", lambda: 2)
    for n_views, expected in ((4, 1), (1, 2)):  # two views at a time: one thread each; one view alone: two
        made.clear()
        with pytest.raises(RuntimeError, match="stop before decoding"):
            views2d.track_views([object()] * n_views, [f"cam{i}" for i in range(n_views)], threads=2)  # type: ignore[list-item]
        seg = made[0]._segmenter()  # the models' interpreters are made on first use, not here
        assert made[0].options.even_halving
        assert seg.landmarks.model.num_threads == expected and seg.detector.model.num_threads == expected


def test_landmarks_on_every_second_frame_interpolate_slow_motion_only() -> None:
    """The landmark tracker with skip_motion (detect_pair): on the example clip (30 frames of pose2sim_single,
    a third of its size), the frames between two detections get their mean where the person moves little,
    a median ~1 px from what the model gives on them; with a zero threshold every frame runs the model."""
    pytest.importorskip("ai_edge_litert")
    from pipelines.io.video_io import probe
    from pipelines.multiview.views2d import make_view_detector, track_view

    clip = Path(__file__).resolve().parents[1] / "assets" / "examples" / "multiview" / "cam01.mp4"
    info = probe(clip)
    runs = {}
    for skip in (None, 1e9, 0.0):
        det = make_view_detector(model_threads=1, skip_motion=skip)
        runs[skip] = (track_view(info, "cam01", det, max_side=None, smooth=False), det.interpolated)
        det.close()
    every, (half, n_half), (zero, n_zero) = runs[None][0], runs[1e9], runs[0.0]
    assert n_zero == 0 and 10 <= n_half <= 15  # 30 frames, the detector's frames (0, 10, 20) not skipped
    assert half.xy_tfk2.shape == every.xy_tfk2.shape == zero.xy_tfk2.shape  # one person, every frame
    sure = (every.conf_tfk[0] > 0.5) & (half.conf_tfk[0] > 0.5)
    gap_px = np.linalg.norm(half.xy_tfk2[0] - every.xy_tfk2[0], axis=-1)[sure]
    assert np.median(gap_px) < 2.0
    assert 0.0 < np.median(np.linalg.norm(zero.xy_tfk2[0] - every.xy_tfk2[0], axis=-1)[sure]) < 2.0


def _example_clip() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "examples" / "multiview" / "cam01.mp4"


def test_landmarks_on_every_fourth_frame_run_the_model_less_and_stay_close() -> None:
    """skip_span 4 (detect_span, the multi-view default): on the example clip the model runs on ~1 frame in 3
    (the detector's frames 0, 10, 20 are never skipped), the frames between interpolated a median < 2 px from
    what the model gives on them; the tracks of every frame are there."""
    pytest.importorskip("ai_edge_litert")
    from pipelines.io.video_io import probe
    from pipelines.multiview.views2d import make_view_detector, track_view

    info = probe(_example_clip())
    runs = {}
    for span in (1, 4):
        det = make_view_detector(model_threads=1, skip_motion=None if span == 1 else 1e9, skip_span=span)
        runs[span] = (track_view(info, "cam01", det, max_side=None, smooth=False), det.interpolated)
        det.close()
    (every, _), (quarter, n_quarter) = runs[1], runs[4]
    assert 18 <= n_quarter <= 21  # 30 frames: 3 of every 4 between the detector's frames, none at the end
    assert quarter.xy_tfk2.shape == every.xy_tfk2.shape
    sure = (every.conf_tfk[0] > 0.5) & (quarter.conf_tfk[0] > 0.5)
    assert np.median(np.linalg.norm(quarter.xy_tfk2[0] - every.xy_tfk2[0], axis=-1)[sure]) < 2.0


def test_a_view_detector_started_over_gives_a_new_ones_tracks(monkeypatch: pytest.MonkeyPatch) -> None:
    """track_views keeps one detector per worker thread (its models made once) and restarts it for the next
    view: the same video twice, one view at a time, gives the same tracks to the bit as a fresh detector,
    and one detector was made. The lazy frames (detect_frame, the crops from the decoded frame under each
    region) give the tracks of the whole downscaled frame (detect) to the bit."""
    pytest.importorskip("ai_edge_litert")
    from pipelines.io.video_io import probe
    from pipelines.multiview import views2d

    made = []
    original = views2d.make_view_detector
    monkeypatch.setattr(views2d, "make_view_detector", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    info = probe(_example_clip())
    first, second = views2d.track_views([info, info], ["a", "b"], threads=1, skip_motion=0.1, skip_span=4,
                                        n_frames=20, max_side=320)  # fmt: skip
    assert len(made) == 1
    np.testing.assert_array_equal(first.xy_tfk2, second.xy_tfk2)
    np.testing.assert_array_equal(first.conf_tfk, second.conf_tfk)
    det = original(model_threads=1, skip_motion=0.1, skip_span=4)
    by_rgb = det.detect_frame
    monkeypatch.setattr(det, "detect_frame", None)  # not callable: track_view hands RGB frames to detect
    whole = views2d.track_view(info, "a", det, n_frames=20, max_side=320)
    monkeypatch.setattr(det, "detect_frame", by_rgb)
    det.close()
    assert first.xy_tfk2.shape[0] >= 1 and np.isfinite(first.xy_tfk2).any()
    np.testing.assert_array_equal(whole.xy_tfk2, first.xy_tfk2)


def test_cli_refuses_a_negative_skip_motion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    code, _, err = run_cli(["multiview", "--videos", tmp_path / "a.mp4", tmp_path / "b.mp4", "--out", tmp_path / "o",
                            "--skip-motion", "-0.1"], capsys)  # fmt: skip
    assert code != 0 and "--skip-motion must be a fraction of the person's size (0: off); got -0.1." in err
