"""The video mode's one focal, pooled over the people of its first frames: every person's evidence starts
from the prior, and when the pooled focal moves, the bodies already fitted move with it, so a person's
distance does not jump from one frame to the next."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.cli import EXIT_OK, main


def test_two_people_share_one_focal_without_depth_jumps(data_dir: Path, tmp_path: Path) -> None:
    video = data_dir / "multiview" / "pose2sim_multi" / "cam01.mp4"  # two people from the first frame
    out = tmp_path / "out"
    code = main(["video", str(video), "--out", str(out), "--end", "0.15", "--max-side", "960", "--no-smooth",
                 "--no-rrd", "--quiet"])  # fmt: skip
    assert code == EXIT_OK
    doc = json.loads((out / "tracks.json").read_text())
    names = doc["joint_names"]
    hips = [names.index("left_hip"), names.index("right_hip")]
    long_tracks = [t for t in doc["tracks"] if len(t["frames"]) >= 6]
    assert len(long_tracks) >= 2  # both people are pooled into the focal
    for track in long_tracks:
        joints_fk3 = np.asarray(track["joints3d_cam"], dtype=np.float64)
        hip_z_f = joints_fk3[:, hips, 2].mean(axis=1)  # metres along the optical axis
        steps_f = np.abs(np.diff(hip_z_f))[np.diff(track["frames"]) == 1]
        # At 60 frames/s a walking person moves ~2 cm a frame; a body left at an older focal would jump
        # by (change of the focal) x distance, ~10-30 cm here.
        assert steps_f.max() < 0.06, (track["id"], np.round(steps_f, 3))
