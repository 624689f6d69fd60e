"""Depth refinement by the people on synthetic scenes with known metric depth.

    python -m bench.bench_scene                      # 20 held-out scenes (seeds 0..19), 320x240
    python -m bench.bench_scene --seeds 100-107      # the tuning seeds the constants were chosen on
    python -m bench.bench_scene --body proxy         # the previous release's box person instead of Anny

Each scene (bench/scene_synth.py): a room (floor, walls, ceiling, three boxes), a person of 1.6-1.9 m
(the Anny body mesh in its rest A-pose, scaled to that height, turned up to 30 degrees; or the box
proxy) standing 2.8-4.5 m away, a camera 1.2-1.8 m high, pitched 5-20 degrees down, rolled up to
4 degrees. The depth input is the true depth corrupted by an unknown scale and shift and a smooth
multiplicative warp (exp of low-frequency cosines, 15 % amplitude, at most 0.75 cycles across the image)
plus 0.5 % noise, in metres ('metric': scale 0.6-1.6, shift +-0.5 m), as depth up to scale and shift
('relative') or as disparity ('inverse'). The people's anchors are the z-buffer of the person's mesh
inside its mask; the ground plane comes from the body's feet (pipelines.scene.ground). With
--body-error E the "fitted" body is the true one moved along the rays by a random factor in
[1 - E, 1 + E] (a distance error of the body fit), and the ground then comes from that body too.

Rows: raw input (kind 'metric': read as metres; otherwise scaled to the person by the median ratio),
the global scale + shift only, and the full refinement: an older release's (affine field, for 'inverse'
in disparity), the previous release's (the affine field s(x) d + b(x), RefineOptions(log_scale_kinds=())),
and this release's (the log-scale model exp(h(x)) * (g(x) + delta), refine.py). AbsRel = mean
|pred - gt| / gt; delta1 = share of pixels with max(pred/gt, gt/pred) < 1.25 (pixels without a
prediction count as misses); "at the person": |median over the person's mask of refined / true depth - 1|,
median and max over the scenes. --ground-tilt-deg / --ground-offset-m perturb the ground anchor (a
wrong plane whose scale disagrees with the person's; signs alternate per seed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import machine_description, markdown_table
from bench.scene_synth import BODY_KINDS, FootedBody, abs_rel, corrupt, delta1, make_scene, perturbed_ground
from pipelines.scene.ground import fit_ground
from pipelines.scene.refine import DEPTH_KINDS, RefineOptions, refine_depth
from pipelines.scene.zbuffer import render_depth

W, H = 320, 240
PREVIOUS = RefineOptions(inverse_field_in_depth=False, ground_tilt_sigma=None, ground_conflict_scale=None,
                         log_scale_kinds=())  # fmt: skip
"""An older release's refinement (the affine field; for kind 'inverse' in disparity)."""
AFFINE = RefineOptions(log_scale_kinds=())
"""The previous release's refinement (main's before the log-scale model: the affine field s(x) d + b(x),
the ground's down-weighting where it disagrees with the people), the baseline row."""


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def run(seeds: list[int], kinds: list[str], body_error: float, body_kind: str = "anny",
        ground_tilt_deg: float = 0.0, ground_offset_m: float = 0.0) -> dict[str, dict[str, list[float]]]:
    res: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        scene = make_scene(rng, W, H, body=body_kind)
        err_rng = np.random.default_rng(10_000 + seed)
        f = 1.0 + err_rng.uniform(-body_error, body_error) if body_error else 1.0
        verts = scene.body_verts_cam_v3 * f
        body = FootedBody(verts_v3=verts, joints={k: v * f for k, v in scene.body.joints.items()})
        anchor = render_depth(verts, scene.body_faces_f3, scene.K_33, W, H)
        anchor = np.where(scene.person_mask_hw & np.isfinite(anchor), anchor, np.nan)
        ground = fit_ground([body])
        if ground is not None and (ground_tilt_deg or ground_offset_m):
            # alternate the sign per seed: a plane tilted or moved either way
            sign = 1.0 if seed % 2 == 0 else -1.0
            ground = perturbed_ground(ground, sign * ground_tilt_deg, sign * ground_offset_m)
        ground_hw = None if ground is None else ground.depth_hw(scene.K_33, W, H)
        for kind in kinds:
            depth_in = corrupt(scene.depth_m_hw, kind, np.random.default_rng([seed, DEPTH_KINDS.index(kind)]))
            t = time.perf_counter()
            out = refine_depth(depth_in, kind, anchor, ground_depth_m_hw=ground_hw,
                               exclude_ground_hw=scene.person_mask_hw)  # fmt: skip
            dt = time.perf_counter() - t
            t = time.perf_counter()
            before = refine_depth(depth_in, kind, anchor, ground_depth_m_hw=ground_hw,
                                  exclude_ground_hw=scene.person_mask_hw, options=PREVIOUS)  # fmt: skip
            dt_before = time.perf_counter() - t
            t = time.perf_counter()
            affine = refine_depth(depth_in, kind, anchor, ground_depth_m_hw=ground_hw,
                                       exclude_ground_hw=scene.person_mask_hw, options=AFFINE)  # fmt: skip
            dt_affine = time.perf_counter() - t
            m = scene.person_mask_hw
            glob = out.global_scale * depth_in + out.global_shift
            glob = np.where(glob > 1e-6, 1 / glob, np.nan) if kind == "inverse" else glob
            raw = 1.0 / depth_in if kind == "inverse" else depth_in
            if kind != "metric":
                raw = raw * np.nanmedian(anchor / raw)
            gt = scene.depth_m_hw
            for name, pred in (("raw", raw), ("global", glob), ("previous", before.depth_m_hw),
                               ("affine", affine.depth_m_hw), ("full", out.depth_m_hw)):  # fmt: skip
                r = res[kind].setdefault(name, [])
                # the person's own error: |median of refined / true depth over its mask - 1|
                at_person = abs(float(np.nanmedian(pred[m] / gt[m])) - 1.0)
                r.append((abs_rel(pred, gt), delta1(pred, gt), at_person))
            res[kind].setdefault("seconds", []).append((dt, dt_before, dt_affine))
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-19", help="scene seeds, e.g. 0-19 (held out) or 100-107 (tuning)")
    parser.add_argument("--kinds", default="metric,relative,inverse")
    parser.add_argument("--body-error", type=float, default=0.0, help="fitted body distance error, e.g. 0.05")
    parser.add_argument("--ground-tilt-deg", type=float, default=0.0,
                        help="tilt the fitted ground by this much (alternate signs per seed), e.g. 6")
    parser.add_argument("--ground-offset-m", type=float, default=0.0,
                        help="move the fitted ground by this much (alternate signs per seed), e.g. 0.25")
    parser.add_argument("--body", choices=BODY_KINDS, default="anny",
                        help="the person: the Anny body mesh, or the previous release's box proxy")  # fmt: skip
    args = parser.parse_args()
    seeds = _seeds(args.seeds)
    kinds = args.kinds.split(",")
    res = run(seeds, kinds, args.body_error, args.body, args.ground_tilt_deg, args.ground_offset_m)
    print(f"\nMachine: {machine_description()}; {len(seeds)} scenes (seeds {args.seeds}), {W}x{H}, "
          f"body {args.body}, body distance error up to {100 * args.body_error:.0f} %, ground tilted "
          f"+-{args.ground_tilt_deg:g} deg and moved +-{args.ground_offset_m:g} m.\n")  # fmt: skip
    rows = []
    for kind in kinds:
        r = {k: np.array(v) for k, v in res[kind].items()}
        a_raw, a_glob = (float(r[n][:, 0].mean()) for n in ("raw", "global"))
        timed = {"full": 0, "previous": 1, "affine": 2}
        for name, label in (("raw", "raw input"), ("global", "global scale + shift"),
                            ("previous", "full refinement, older release (affine field, inverse in disparity)"),
                            ("affine", "full refinement, previous release: affine field (baseline)"),
                            ("full", "full refinement")):  # fmt: skip
            a = float(r[name][:, 0].mean())
            rows.append([kind, label, f"{a:.3f}", f"{r[name][:, 1].mean():.3f}",
                         f"{a_raw / a:.2f}x" if name != "raw" else "–",
                         f"{a_glob / a:.2f}x" if name in timed else "–",
                         f"{100 * np.median(r[name][:, 2]):.1f} / {100 * r[name][:, 2].max():.1f}",
                         f"{1000 * r['seconds'][:, timed[name]].mean():.0f}" if name in timed else "–"])  # fmt: skip
    print(markdown_table(["input kind", "depth", "AbsRel", "delta1", "AbsRel gain vs raw",
                          "gain vs global", "at the person, median / max (%)", "refine ms"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
