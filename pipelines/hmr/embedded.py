"""Embedded human mesh recovery: promptable fitting of the Anny body (CPU, offline)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from pipelines.body.anny_model import AnnyBody
from pipelines.body.anny_points import known_point_names, output_joints, skeleton_joints
from pipelines.body.params import AnnyParams
from pipelines.errors import BadPromptError
from pipelines.hmr.base import NoBodyFound
from pipelines.hmr.fit import FitOptions, FitState, FitTargets
from pipelines.hmr.solver import BodyFitter, FitReport
from pipelines.registry import create, register
from pipelines.types import BodyFit, Camera, Keypoints3D, PersonDetection

# BlazePose's coarse hand points are superseded once the hand landmarker has found that hand.
_COARSE_HAND = ("pinky", "index", "thumb")


@dataclass
class PersonFit:
    """A fitted body and the state to warm-start the next fit of the same person."""

    state: FitState
    report: FitReport
    make_body: Callable[[], BodyFit] = field(repr=False)
    """Builds the body (skinned mesh, joints) on first access of `body`: a fit that is only a first pass
    (the focal shared by several people refits each of them) never pays for its mesh."""
    _body: BodyFit | None = field(default=None, init=False, repr=False)

    @property
    def body(self) -> BodyFit:
        if self._body is None:
            self._body = self.make_body()
        return self._body


@register("hmr", "embedded")
class EmbeddedHMR:
    """SMPLify-style fit of a body model to keypoints, 3D landmarks, the mask and prompts."""

    def __init__(self, body: str = "anny", options: FitOptions | None = None) -> None:
        self.body: AnnyBody = create("body", body)
        self.fitter = BodyFitter(self.body)
        self.options = options or FitOptions()

    def warmup(self) -> None:
        """Load the body model and precompute the point sets (Anny's first build takes ~1 min)."""
        _ = self.body.faces_f3
        _ = known_point_names(self.body)

    def targets(self, person: PersonDetection, prompts: dict[str, tuple[float, float]],
                use_mask: bool = True) -> FitTargets:  # fmt: skip
        known = known_point_names(self.body)
        unknown = sorted(set(prompts) - known)
        if unknown:
            raise BadPromptError(f"unknown joint name(s) for a keypoint prompt: {', '.join(unknown)}")
        kp = person.keypoints2d
        names = [n for n in kp.names if n in known]
        idx = [kp.names.index(n) for n in names]
        xy = kp.xy_k2[idx].astype(np.float64)
        conf = kp.conf_k[idx].astype(np.float64).copy()
        for side in ("left", "right"):
            if any(n.startswith(f"{side}_hand_") for n in names):
                for short in _COARSE_HAND:
                    if f"{side}_{short}" in names:
                        conf[names.index(f"{side}_{short}")] = 0.0
        for name in prompts:
            if name not in names:
                names.append(name)
                xy = np.vstack([xy, [0.0, 0.0]])
                conf = np.append(conf, 0.0)
        world = dict(zip(person.keypoints3d_hip.names, person.keypoints3d_hip.xyz_k3, strict=True))
        hip3d = np.array([world.get(n, (np.nan, np.nan, np.nan)) for n in names], dtype=np.float64)
        mask = person.mask_hw if use_mask else None
        return FitTargets(names, xy, conf, hip3d, dict(prompts), mask)

    def fit(self, camera: Camera, person: PersonDetection, prompts: dict[str, tuple[float, float]] | None = None,
            warm: FitState | None = None, estimate_focal: bool = False,
            focal_prior_px: float | None = None, fast: bool = False,
            image_rgb_hw3: np.ndarray | None = None) -> PersonFit:  # fmt: skip
        """Fit one person. With estimate_focal the focal length is solved too (log-normal prior around
        focal_prior_px); the result's state.focal_px holds it. `fast` (warm-started prompt edits) runs
        fewer iterations. `image_rgb_hw3` is not used (the HumanMeshRecovery protocol passes it for image models)."""
        opts = FitOptions(**{**self.options.__dict__})
        opts.fit_focal = estimate_focal
        opts.focal_prior_px = focal_prior_px or camera.focal_px
        if fast and warm is not None:
            opts.pose_iters, opts.shape_iters = 4, 2
        tg = self.targets(person, prompts or {})
        try:
            report = self.fitter.fit(tg, camera.K_33, opts, warm)
        except np.linalg.LinAlgError as err:  # e.g. non-finite keypoints: this person only
            raise NoBodyFound(f"the body fit failed on this person's keypoints ({err}).") from err
        return PersonFit(report.state, report, self._body_maker(report, tg))

    def fit_many(self, camera: Camera, people: list[PersonDetection], prompts: list[dict[str, tuple[float, float]]],
                 warms: list[FitState | None], estimate_focal: bool = False, focal_prior_px: float | None = None,
                 fast: bool = False) -> list[PersonFit]:  # fmt: skip
        """fit() for several people of one photo, fitted together (BodyFitter.fit_many); the same fits."""
        out: list[PersonFit | None] = [None] * len(people)
        groups: dict[bool, list[int]] = {}
        for i, w in enumerate(warms):
            groups.setdefault(bool(fast and w is not None), []).append(i)
        for quick, idx in groups.items():
            opts = FitOptions(**{**self.options.__dict__})
            opts.fit_focal = estimate_focal
            opts.focal_prior_px = focal_prior_px or camera.focal_px
            if quick:
                opts.pose_iters, opts.shape_iters = 4, 2
            tgs = [self.targets(people[i], prompts[i] or {}) for i in idx]
            reports = self.fitter.fit_many(tgs, camera.K_33, opts, [warms[i] for i in idx])
            for i, tg, rep in zip(idx, tgs, reports, strict=True):
                out[i] = PersonFit(rep.state, rep, self._body_maker(rep, tg))
        return out  # type: ignore[return-value]

    def _body_maker(self, report: FitReport, targets: FitTargets) -> Callable[[], BodyFit]:
        """PersonFit.make_body for a fit: it keeps the targets without their mask (a full-resolution image
        per person, which the body does not need, held as long as the fit)."""
        lean = replace(targets, mask_hw=None)
        return lambda: self.to_body_fit(report, lean)

    def to_body_fit(self, report: FitReport, targets: FitTargets) -> BodyFit:
        body = self.body
        st = report.state
        rest_v = body.rest_vertices(report.rest.coeffs_n)
        verts = body.skin(report.rest.coeffs_n, report.rest.heads_j3, report.G_j33, report.o_j3, rest_v3=rest_v)
        jnames, joints = output_joints(body, verts)
        err = report.err_px_k
        used = np.isfinite(err)
        per_kp = {n: float(e) for n, e in zip(targets.names, err, strict=True) if np.isfinite(e)}
        params = AnnyParams(
            phenotype=st.pheno_p.copy(),
            phenotype_labels=np.array(body.phenotype_labels),
            bone_labels=np.array(body.bone_labels),
            bone_rot_world_j33=report.G_j33.copy(),
            root_pos_cam_3=st.root_pos_3.copy(),
            focal_px=np.array(st.focal_px),
        )
        return BodyFit(
            model="anny",
            params=params,
            verts_cam_v3=verts,
            faces_f3=body.faces_f3,
            joints3d_cam=Keypoints3D(jnames, joints, frame="cam"),
            height_m=float(np.ptp(rest_v[:, 2])),
            reprojection_px_mean=float(err[used].mean()) if used.any() else float("nan"),
            reprojection_px_max=float(err[used].max()) if used.any() else float("nan"),
            per_keypoint_px=per_kp,
            joints3d_skeleton_cam=Keypoints3D(*skeleton_joints(body, report.o_j3), frame="cam"),
        )

    def add_native_pose(self, fit: BodyFit) -> None:
        """Add Anny's own 'local-ref' pose parameters (J, 4, 4) to fit.params (for the saved .npz)."""
        if "pose_local_ref_j44" in fit.params:
            return
        rest = self.body.rest_state(fit.params["phenotype"])
        fit.params["pose_local_ref_j44"] = self.body.native_pose(
            rest, fit.params["bone_rot_world_j33"], fit.params["root_pos_cam_3"]
        )
