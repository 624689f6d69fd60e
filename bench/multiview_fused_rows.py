"""The fused rows of bench.accuracy_multiview: the multi-view bodies against a reference they did not see.

The capture's views are tracked (pipelines.multiview.views2d) and fused once with everything on (time
offsets, camera refinement); the refined cameras are then held. References:

- **other pair** (independent): the 4 views split into two disjoint pairs (3 splits x 2 directions); the
  method sees one pair, the reference is the robust triangulation of the other pair's keypoints (same
  refined cameras, no time offsets: the pairs' grids differ by < 1.3 frames here). Rows: the plain
  triangulation of the method's pair, the Anny body fitted to that pair (pipelines.multiview.body_fit),
  and the single-view methods of bench.accuracy_multiview on each view of that pair (pose2sim_single
  only: they take the first detected person, which is not the fused person in pose2sim_multi).
- **own 4 views** (not independent): the body fitted to all 4 views against the triangulation of the
  same keypoints, i.e. how far the body's fixed bone lengths and pose prior sit from the free points.
- **fused body (4 views)**: the single-view methods of each view against the body fitted to all views (the
  issue's "single-view vs fused"; compare with the main table, whose reference is the plain triangulation).
On the other-pair reference, the body and single-view rows use the same samples (frames where the body
and the reference have all 12 joints).

The pairs' people are those of the 4-view fusion (its association, with the given calibration): each pair
sees one person's tracks at a time, so a 2-view fusion cannot mix two people standing close together (it
did on pose2sim_multi when each pair associated its own people). Metrics on the
joints of bench.common: PA-MPJPE (Procrustes with scale) on 12 body / 17 COCO joints, root-relative
MPJPE, and MPJPE with no alignment at all (world frame, metres: only meaningful for the fused rows).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from bench.common import BODY12_NAMES, COCO17_NAMES, ROOT_NAMES, pa_mpjpe, root_relative_mpjpe
from pipelines.io.video_io import probe
from pipelines.multiview.body_fit import BodyOptions, fit_bodies
from pipelines.multiview.calibration import CalibratedCamera
from pipelines.multiview.fuse import FUSED_JOINT_NAMES, FusedPerson, FuseOptions, fuse_views
from pipelines.multiview.views2d import ViewTracks, track_view

METRICS = ("pa12", "pa17", "rr12", "abs12")
SPLITS = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
_B12 = [FUSED_JOINT_NAMES.index(n) for n in BODY12_NAMES]
_C17 = [FUSED_JOINT_NAMES.index(n) for n in COCO17_NAMES]
_ROOT12 = [BODY12_NAMES.index(n) for n in ROOT_NAMES]


def load_views(data: Path, cams: list[CalibratedCamera], n_frames: int, cache: Path | None) -> list[ViewTracks]:
    """Every view's tracked people over the first n_frames (cached as .npz in `cache` when given)."""
    folder = None if cache is None else cache / f"{data.name}_{n_frames}"
    for old in [] if cache is None else sorted(cache.glob(f"{data.name}_*")):  # a longer cached run, cut
        if old.name[len(data.name) + 1:].isdigit() and int(old.name[len(data.name) + 1:]) >= n_frames \
                and all((old / f"{c.name}.npz").is_file() for c in cams):  # fmt: skip
            views = [ViewTracks.load(old / f"{c.name}.npz") for c in cams]
            return [dataclasses.replace(v, frames=v.frames[:n_frames], xy_tfk2=v.xy_tfk2[:, :n_frames],
                                        conf_tfk=v.conf_tfk[:, :n_frames]) for v in views]  # fmt: skip
    from pipelines.registry import create

    detector = create("segmentation", "embedded", single_pass=True, max_people=4)
    try:
        views = [track_view(probe(data / f"{c.name}.mp4"), c.name, detector, n_frames=n_frames) for c in cams]
    finally:
        detector.close()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for v in views:
            v.save(folder / f"{v.name}.npz")
    return views


def _person_views(views: list[ViewTracks], person: FusedPerson, idx: tuple[int, ...]) -> list[ViewTracks]:
    """Views `idx`, each cut to the track rows the 4-view association gave `person` (one person per pair)."""
    out = []
    for i in idx:
        rows = person.members[i]
        v = views[i]
        out.append(dataclasses.replace(v, xy_tfk2=v.xy_tfk2[rows], conf_tfk=v.conf_tfk[rows],
                                       track_ids=[v.track_ids[r] for r in rows]))  # fmt: skip
    return out


def _score(pred_k3: np.ndarray, ref_k3: np.ndarray) -> dict[str, float] | None:
    """Metrics of FUSED_JOINT_NAMES-ordered joints (K, 3) against the reference (same frame), mm."""
    p12, r12 = pred_k3[_B12], ref_k3[_B12]
    if not (np.isfinite(p12).all() and np.isfinite(r12).all()):
        return None
    p17, r17 = pred_k3[_C17], ref_k3[_C17]
    ok17 = np.isfinite(p17).all() and np.isfinite(r17).all()
    return {"pa12": 1000 * pa_mpjpe(p12, r12), "pa17": 1000 * pa_mpjpe(p17, r17) if ok17 else np.nan,
            "rr12": 1000 * root_relative_mpjpe(p12, r12, _ROOT12),
            "abs12": 1000 * float(np.linalg.norm(p12 - r12, axis=-1).mean())}  # fmt: skip


def _in_fused_order(joints: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([joints.get(n, (np.nan,) * 3) for n in FUSED_JOINT_NAMES], dtype=np.float64)


def fused_rows(data: Path, cams: list[CalibratedCamera], frames: list[int], preds: dict[str, dict] | None,
               cache: Path | None, fps: float, body_options: BodyOptions | None = None) -> dict:  # fmt: skip
    """The fused rows (see the module docstring): {row name: {"reference", "n", metric means...}};
    `body_options`: the body fit's (default BodyOptions())."""
    body_options = body_options or BodyOptions()
    n_frames = max(frames) + 1
    views = load_views(data, cams, n_frames, cache)
    t0 = time.perf_counter()
    full = fuse_views(views, cams, FuseOptions(), fps=fps)
    bodies_full = fit_bodies(full, body_options, fps=fps)
    body_s = sum(b.fit_s for b in bodies_full)
    if len(full.people) != 1:
        preds = None  # single-view methods take the first detection: single-person captures only
    cams_r = full.cams
    scores: dict[str, list[dict[str, float]]] = {}
    refs: dict[str, str] = {}

    def add(name: str, ref: str, s: dict[str, float] | None) -> None:
        if s is not None:
            key = f"{name} vs {ref}"
            scores.setdefault(key, []).append(s)
            refs[key] = ref

    for body in bodies_full:
        person = full.people[body.id]
        index = {int(f): i for i, f in enumerate(body.frames)}
        for f in frames:
            if f not in index:
                continue
            kp = body.keypoints_world_fk3[index[f]]
            own = "own 4 views' triangulation (not independent)"
            add("fused body (4 views)", own, _score(kp, person.joints_fk3[f]))
            for method, by_sample in (preds or {}).items():  # the "single-view vs fused"
                for v in range(len(cams_r)):
                    joints = by_sample.get((f, v))
                    if joints is not None:
                        T = cams_r[v].cam_T_world_44
                        s = _score(_in_fused_order(joints), kp @ T[:3, :3].T + T[:3, 3])
                        if s is not None:
                            s["abs12"] = np.nan
                        add(f"{method} (1 view)", "fused body (4 views)", s)
    quick = FuseOptions(sync=False, refine=False)
    for pair_a, pair_b in SPLITS:
        for a, b in ((pair_a, pair_b), (pair_b, pair_a)):
            for person in full.people:  # each person of the 4-view association alone: the pairs cannot mix people
                if not all(person.members.get(i) for i in (*a, *b)):
                    continue
                fa = fuse_views(_person_views(views, person, a), [cams_r[i] for i in a], quick, fps=fps)
                fb = fuse_views(_person_views(views, person, b), [cams_r[i] for i in b], quick, fps=fps)
                if len(fa.people) != 1 or len(fb.people) != 1:
                    continue
                pa, qb = fa.people[0], fb.people[0]
                [body] = fit_bodies(fa, body_options, fps=fps) or [None]
                ref_name = "other pair's triangulation"
                index = {} if body is None else {int(f): i for i, f in enumerate(body.frames)}
                for f in frames:
                    if f >= fa.n_frames or f >= fb.n_frames:
                        continue
                    ref = qb.joints_fk3[f]
                    add("triangulation (2 views)", ref_name, _score(pa.joints_fk3[f], ref))
                    s_body = _score(body.keypoints_world_fk3[index[f]], ref) if f in index else None
                    if s_body is None:
                        continue  # the rows below on the same samples only
                    add("fused body (2 views)", ref_name, s_body)
                    for method, by_sample in (preds or {}).items():
                        for v in a:
                            joints = by_sample.get((f, v))
                            if joints is None:
                                continue
                            T = cams_r[v].cam_T_world_44
                            ref_cam = ref @ T[:3, :3].T + T[:3, 3]
                            s = _score(_in_fused_order(joints), ref_cam)
                            if s is not None:
                                s["abs12"] = np.nan  # single view: depth and position are not comparable here
                            add(f"{method} (1 view)", ref_name, s)
    rows = {}
    for name, ss in scores.items():
        rows[name] = {"method": name.split(" vs ")[0], "reference": refs[name], "n": len(ss),
                      **{k: float(np.nanmean([s[k] for s in ss])) for k in METRICS}}  # fmt: skip
    rows["_meta"] = {"fusion_and_body_s": time.perf_counter() - t0, "body_fit_s_4_views": body_s,
                     "body_median_reproj_px_4_views": [b.median_reproj_px for b in bodies_full],
                     "fused_median_reproj_px_4_views": full.median_reproj_px}  # fmt: skip
    return rows
