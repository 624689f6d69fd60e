"""The fused bodies' error budget on a capture, and the reprojection a perfect body would have (the noise floor).

    python -m bench.multiview_noise_floor                                # pose2sim_single (tuning), 100 frames
    python -m bench.multiview_noise_floor --cache /tmp/mv --frames 100   # reuse the per-view keypoints

1. Real data (the fusion and the bodies with every default): median reprojection of the triangulated points and
   of the body's keypoints on the triangulation's inlier observations, per joint and per view; the same once
   each (view, joint)'s median 2D residual over the sequence is removed (an upper bound of what any constant
   offset, a landmark convention included, could remove); the residuals' correlation over time.
2. Synthetic views of a known motion: the truth is the real body's keypoints (world frame); each real inlier
   observation becomes the truth projected into its view plus 2D Gaussian noise (per view, proportional to the
   real triangulation's residual in that view, scaled so that the triangulation of the noisy views reprojects
   as the real one does), i.i.d. over frames or correlated (AR(1), as the real residuals are). The
   triangulation and the body fit (BodyOptions variants) run on them: their reprojection against the truth's
   own (what a perfect body would show), and their 3D distance to the truth (mm).

A reprojection below the truth's is the noise fitted, not a better body.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: as app/cli.py does

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import DATA_DIR, machine_description, markdown_table  # noqa: E402
from pipelines.modes.multiview import MultiviewOptions, run_multiview  # noqa: E402
from pipelines.multiview.body_fit import BodyOptions, PersonBody, fit_bodies  # noqa: E402
from pipelines.multiview.calibration import CalibratedCamera  # noqa: E402
from pipelines.multiview.fuse import FUSED_JOINT_NAMES, FusedPerson, FusionResult  # noqa: E402
from pipelines.multiview.triangulate import triangulate_points  # noqa: E402
from pipelines.multiview.views2d import ViewTracks  # noqa: E402

VARIANTS: dict[str, dict] = {
    "default": {},
    "main before issue 10 (2 iterations a frame)": {"offset_pose_iters": 2},
    "every frame fitted": {"fit_every": 1, "offset_pose_iters": 3},
    "smoothing 0.1 s": {"smooth_s": 0.1},
    "no smoothing": {"smooth_s": 0.0},
    "every iteration of a frame (no early stop)": {"stop_rel": 0.0},
    "a frame's fit stopped at a 2 % gain": {"stop_rel": 0.02},
}
"""BodyOptions variants of the synthetic runs."""


def residuals_vfk2(x_fk3: np.ndarray, obs_vfk2: np.ndarray, cams: list[CalibratedCamera]) -> np.ndarray:
    """World points (F, K, 3) projected into each view minus the observations (V, F, K, 2), pixels."""
    n_f, n_k = x_fk3.shape[:2]
    return np.stack([c.project_world(x_fk3.reshape(-1, 3)).reshape(n_f, n_k, 2) for c in cams]) - obs_vfk2


def median_px(e_vfk2: np.ndarray, mask_vfk: np.ndarray) -> float:
    return float(np.nanmedian(np.linalg.norm(e_vfk2, axis=-1)[mask_vfk]))


def synthetic_fusion(fusion: FusionResult, person: FusedPerson, truth_fk3: np.ndarray, sigma_v: np.ndarray,
                     rho: float, seed: int = 0) -> tuple[FusionResult, np.ndarray, np.ndarray]:  # fmt: skip
    """The fusion with `person`'s inlier observations replaced by the truth projected plus noise (per view
    `sigma_v`: rms of the 2D error, pixels; AR(1) over frames with coefficient `rho`), triangulated again as the
    final triangulation does. Returns it, the noisy observations (V, F, K, 2) and their mask (V, F, K)."""
    inl = person.inlier_vfk & (person.conf_vfk > 0) & np.isfinite(truth_fk3).all(-1)[None]
    n_v, n_f, n_k = inl.shape
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_v, n_f, n_k, 2))
    for f in range(1, n_f):
        white[:, f] = rho * white[:, f - 1] + np.sqrt(1 - rho**2) * white[:, f]
    proj = residuals_vfk2(truth_fk3, np.zeros((n_v, n_f, n_k, 2)), fusion.cams)
    obs = np.where(inl[..., None], proj + white * sigma_v[:, None, None, None] / np.sqrt(2), np.nan)
    w = np.where(inl, person.conf_vfk, 0.0)
    tri = triangulate_points(obs.reshape(n_v, -1, 2), w.reshape(n_v, -1), fusion.cams, distorted=False,
                             min_conf=1e-6, outlier_px=20.0)  # fmt: skip
    x = tri.xyz_n3.reshape(n_f, n_k, 3)
    syn = dataclasses.replace(person, joints_fk3=x, obs_xy_vfk2=np.where(inl[..., None], obs, person.obs_xy_vfk2),
                              inlier_vfk=inl & tri.used_vn.reshape(n_v, n_f, n_k))  # fmt: skip
    return dataclasses.replace(fusion, people=[syn]), obs, inl


def _mm(a_fk3: np.ndarray, b_fk3: np.ndarray) -> float:
    return float(1000 * np.nanmedian(np.linalg.norm(a_fk3 - b_fk3, axis=-1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", default="pose2sim_single")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=None, help="folder for the per-view keypoints (reused)")
    args = parser.parse_args()
    print(machine_description(), f"; load average {os.getloadavg()[0]:.1f}")
    folder = DATA_DIR / "multiview" / args.capture
    videos = sorted(folder.glob("cam0*.mp4"))
    cache = None if args.cache is None else args.cache / f"{args.capture}_{args.frames}"
    views = None
    if cache is not None and cache.is_dir():
        views = [ViewTracks.load(cache / f"{v.stem}.npz") for v in videos]
    result = run_multiview(videos, folder / "Calib.qca.txt", MultiviewOptions(n_frames=args.frames,
                           body=BodyOptions(fit=False)), views=views)  # fmt: skip
    if views is None and cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        for v in result.views:
            v.save(cache / f"{v.name}.npz")
    from pipelines.registry import create

    hmr = create("hmr", "embedded")
    fusion, fps = result.fusion, result.fps
    bodies: list[PersonBody] = fit_bodies(fusion, BodyOptions(), hmr=hmr, fps=fps)
    for person, body in zip(fusion.people, bodies, strict=True):
        n_f = fusion.n_frames
        truth = np.full((n_f, len(FUSED_JOINT_NAMES), 3), np.nan)
        truth[body.frames] = body.keypoints_world_fk3
        inl = person.inlier_vfk & (person.conf_vfk > 0)
        e_tri = residuals_vfk2(person.joints_fk3, person.obs_xy_vfk2, fusion.cams)
        e_body = residuals_vfk2(truth, person.obs_xy_vfk2, fusion.cams)
        print(f"\n{args.capture}, person {person.id}: real data (the default fit)")
        rows = []
        for k, name in enumerate(FUSED_JOINT_NAMES):
            m = np.zeros_like(inl)
            m[:, :, k] = inl[:, :, k]
            rows.append([name, median_px(e_tri, m), median_px(e_body, m)])
        for v, cam in enumerate(fusion.cams):
            m = np.zeros_like(inl)
            m[v] = inl[v]
            rows.append([f"view {cam.name}", median_px(e_tri, m), median_px(e_body, m)])
        unbiased = []
        for e in (e_tri, e_body):
            bias_vk2 = np.nanmedian(np.where(inl[..., None], e, np.nan), axis=1)
            unbiased.append(median_px(e - bias_vk2[:, None], inl))
        rows.append(["all", median_px(e_tri, inl), median_px(e_body, inl)])
        rows.append(["all, each (view, joint)'s median 2D residual removed", *unbiased])
        print(markdown_table(["joint / view", "triangulation px", "body px"], rows))
        e = np.where(inl[..., None], e_tri, np.nan)
        corr = []
        for lag in (1, 4, 16):
            a, b = e[:, :-lag], e[:, lag:]
            ok = np.isfinite(a) & np.isfinite(b)
            corr.append(f"{lag}: {np.corrcoef(a[ok], b[ok])[0, 1]:.2f}")
        print("correlation of the triangulation's 2D residuals over time (lag in frames):", ", ".join(corr))
        # Synthetic views: noise per view proportional to the real triangulation's residual there, scaled so that
        # the synthetic triangulation reprojects as the real one (a first run at scale 1 measures the ratio).
        real_tri = median_px(e_tri, inl)
        tri_v = np.array([median_px(e_tri, np.where(np.arange(len(inl))[:, None, None] == v, inl, False))
                          for v in range(len(inl))])  # fmt: skip
        rows = []
        for rho in (0.0, 0.75):
            syn, obs, m = synthetic_fusion(fusion, person, truth, tri_v, rho)
            scale = real_tri / median_px(residuals_vfk2(syn.people[0].joints_fk3, obs, fusion.cams), m)
            syn, obs, m = synthetic_fusion(fusion, person, truth, scale * tri_v, rho)
            x = syn.people[0].joints_fk3
            label = "i.i.d." if rho == 0 else f"AR(1) {rho}"
            rows.append([label, "the truth itself", median_px(residuals_vfk2(truth, obs, fusion.cams), m), 0.0, "–"])
            rows.append([label, "triangulation", median_px(residuals_vfk2(x, obs, fusion.cams), m), _mm(x, truth),
                         "–"])  # fmt: skip
            for name, kw in VARIANTS.items():
                c0 = time.process_time()
                [b] = fit_bodies(syn, BodyOptions(**kw), hmr=hmr, fps=fps)
                cpu = time.process_time() - c0
                rows.append([label, f"body, {name} {json.dumps(kw) if kw else ''}".strip(), b.median_reproj_px,
                             _mm(b.keypoints_world_fk3, truth[b.frames]), f"{cpu:.1f}"])  # fmt: skip
            print(f"  ({label}: noise rms per view {' / '.join(f'{s:.1f}' for s in scale * tri_v)} px)")
        print(f"\n{args.capture}, person {person.id}: synthetic views of the body's motion with the keypoints' noise")
        print(markdown_table(["noise over time", "estimate", "median reproj px", "median 3D error to the truth mm",
                              "bodies CPU s"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
