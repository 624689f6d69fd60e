"""SAM2 in the video mode, on CPU and offline: a random-weight SAM2.1 hiera-tiny (the real checkpoint
layout, in a local Hugging Face cache) draws each tracked person's mask on a few frames of a real clip;
the video CLI takes the backend flags, records the backends in tracks.json and warns once when the hub
model cannot be had. Random weights draw arbitrary masks: the checks hold whatever the weights draw
(shapes, ranges, masks inside the tracked person's box), plus the overlap that these weights give."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_lines, run_cli

from app.cli import EXIT_BAD_INPUT, EXIT_OK
from bench.hub_models import save_random_sam2
from pipelines.io.video_io import probe, read_video
from pipelines.modes.image import ImagePipeline, PipelineConfig
from pipelines.modes.video import VideoOptions, VideoPipeline
from pipelines.segmentation.hub_sam2_video import TrackedSam2Masks

REPO = "facebook/sam2.1-hiera-tiny"
IMAGE_SIZE = 128
DANCER = Path(__file__).resolve().parents[1] / "assets" / "examples" / "dancer.mp4"
STRIDE, END_S, MAX_SIDE = 4, 0.2, 480  # frames 0, 4, 8 of the 60 fps clip, 270x480


@pytest.fixture(scope="module")
def hf_cache(offline_hf_cache: Path) -> Iterator[Path]:
    save_random_sam2(REPO)
    yield offline_hf_cache


class _RecordBoxes:
    """The landmark tracker, recording the box it gives each person on each frame (SAM2's prompt)."""

    def __init__(self, tracker: object) -> None:
        self.tracker = tracker
        self.boxes: list[list[np.ndarray]] = []

    def detect(self, rgb_hw3: np.ndarray) -> list:
        people = self.tracker.detect(rgb_hw3)
        self.boxes.append([np.array(p.bbox_xyxy, dtype=np.float64) for p in people])
        return people


def test_sam2_masks_follow_the_tracked_person(hf_cache: Path) -> None:
    config = PipelineConfig(segmentation="hub", device="cpu", fallback=False,
                            hub_options={"segmentation": {"repo_id": REPO, "image_size": IMAGE_SIZE}})  # fmt: skip
    video = VideoPipeline(ImagePipeline(config), VideoOptions(rate_hz=60 / STRIDE, threaded=False))
    stage = video._segmenter()
    assert isinstance(stage, TrackedSam2Masks)
    stage.people = recorder = _RecordBoxes(stage.people)
    results = list(video.run(read_video(probe(DANCER), stride=STRIDE, end_s=END_S, max_side=MAX_SIDE)))
    assert [r.frame.index for r in results] == [0, 4, 8]
    ious = []
    for result, boxes in zip(results, recorder.boxes, strict=True):
        assert [p.id for p in result.people] == [0] and len(boxes) == 1  # the dancer, one stable track
        mask_hw = result.people[0].detection.mask_hw
        assert mask_hw.shape == result.frame.rgb_hw3.shape[:2] == (480, 270) and mask_hw.dtype == np.float32
        assert mask_hw.min() >= 0.0 and mask_hw.max() <= 1.0
        x0, y0, x1, y1 = boxes[0]
        g = stage.box_grow_frac + 0.05 * (1 + 2 * stage.box_grow_frac) + 0.01  # SAM2's prompt box, its margin
        gx, gy = g * (x1 - x0) + 1, g * (y1 - y0) + 1
        box_hw = np.zeros(mask_hw.shape, dtype=bool)
        box_hw[int(max(0, y0 - gy)) : int(np.ceil(y1 + gy)), int(max(0, x0 - gx)) : int(np.ceil(x1 + gx))] = True
        fg_hw = mask_hw > 0.5
        assert fg_hw.any() and not (fg_hw & ~box_hw).any()  # the mask is this frame's tracked person's
        ious.append(np.count_nonzero(fg_hw & box_hw) / np.count_nonzero(fg_hw | box_hw))
        assert result.people[0].body is not None  # fitted with the SAM2 mask (silhouette term)
    assert min(ious) > 0.5, ious
    assert video._masks
    uses = video.backend_uses()
    assert (uses["segmentation"].asked, uses["segmentation"].used, uses["segmentation"].reason) == ("hub", "hub", None)


def test_video_cli_falls_back_once_and_records_the_backends(hf_cache: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """The default checkpoint (hiera-large) is not in the offline cache: a warning naming it, once, and the
    embedded masks; tracks.json says which backend ran and why."""
    out = tmp_path / "out"
    code, _, err = run_cli(["video", DANCER, "--out", out, "--stride", 10, "--end", 0.3, "--max-side", 320,
                            "--segmentation", "hub", "--device", "cpu", "--no-rrd", "--quiet"], capsys)  # fmt: skip
    assert code == EXIT_OK, err
    warned = [line for line in err.splitlines() if line.startswith("warning:") and "segmentation" in line]
    assert len(warned) == 1 and "facebook/sam2.1-hiera-large" in warned[0], err
    doc = json.loads((out / "tracks.json").read_text())
    seg = doc["backends"]["segmentation"]
    assert (seg["asked"], seg["used"]) == ("hub", "embedded") and "sam2.1-hiera-large" in seg["fallback_reason"]
    assert doc["backends"]["hmr"]["used"] == "embedded" and len(doc["frames"]) == 2 and doc["tracks"]


def test_video_cli_refuses_backends_it_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["video", DANCER, "--out", tmp_path / "out", "--hmr", "hub", "--quiet"], capsys)
    assert code == EXIT_BAD_INPUT
    (line,) = error_lines(err)
    assert "--hmr hub" in line and "image mode" in line
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # no scene depth or field-of-view model in a video
        run_cli(["video", DANCER, "--out", tmp_path / "out", "--depth", "hub"], capsys)
