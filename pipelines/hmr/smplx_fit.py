"""The promptable fit with the SMPL-X body (`--body smplx`): keypoints, 3D landmarks and prompts -> SMPL-X.

The same job as the embedded Anny fit (pipelines.hmr.embedded), for users who bring their own SMPL-X
files: shape (10 betas), 21 body joint rotations, hands when the hand keypoints are there, root
rotation and translation (and the focal length when it is unknown) are solved by L-BFGS in torch on
a robust 2D reprojection error of the detector's keypoints (pixels), keypoint prompts as strong
constraints (10x), the detector's hip-centred 3D landmarks (metres) and L2 priors on pose and shape.
No silhouette term (the Anny fit has one). Inputs and outputs in pixels of the image and metres in
the OpenCV camera frame (x right, y down, z forward). Same protocol as the embedded HMR
(pipelines.hmr.base.HumanMeshRecovery), so the image mode, viewer and exports work unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from pipelines.body.params import SMPLXParams
from pipelines.body.smplx_model import KEYPOINT_TO_SMPLX, NUM_BETAS, SmplxBody
from pipelines.errors import BadPromptError
from pipelines.registry import create, register
from pipelines.types import BodyFit, Camera, Keypoints3D, PersonDetection

PROMPT_WEIGHT = 10.0
PIXEL_SCALE = 8.0
"""Pixels of reprojection error at which the robust loss starts to flatten."""
LANDMARK_SCALE_M = 0.05
LANDMARK_WEIGHT = 0.3
POSE_PRIOR, SHAPE_PRIOR, HAND_PRIOR = 2.0, 1.0, 0.5
FOCAL_SIGMA_LOG = 0.3
_COARSE_HAND = ("pinky", "index", "thumb")  # BlazePose's hand points: superseded by the hand landmarks


@dataclass
class SmplxFitState:
    """The fit's variables (what warm-starts the next fit of the same person)."""

    betas: np.ndarray
    global_orient_3: np.ndarray
    body_pose_j3: np.ndarray
    left_hand_j3: np.ndarray
    right_hand_j3: np.ndarray
    root_pos_3: np.ndarray
    """SMPL-X's translation (metres, camera frame)."""
    focal_px: float

    def copy(self) -> SmplxFitState:
        return SmplxFitState(*(np.array(getattr(self, f)) for f in
                               ("betas", "global_orient_3", "body_pose_j3", "left_hand_j3", "right_hand_j3",
                                "root_pos_3")), float(self.focal_px))  # fmt: skip


@dataclass
class SmplxFitReport:
    state: SmplxFitState
    err_px_k: np.ndarray
    """Reprojection error per target keypoint in pixels (NaN where not used)."""
    focal_log_var: float | None = None
    """Variance of log(focal) when the focal was estimated (from the prior's share of the curvature)."""
    iterations: int = 0


@dataclass
class SmplxPersonFit:
    body: BodyFit
    state: SmplxFitState
    report: SmplxFitReport


@dataclass
class _Targets:
    names: list[str]
    """Detector / prompt names."""
    smplx_names: list[str]
    xy_k2: np.ndarray
    weight_k: np.ndarray
    hip3d_k3: np.ndarray
    """Hip-centred 3D landmarks (metres, camera axes), NaN where unknown."""
    hands: dict[str, bool] = field(default_factory=dict)


def _rotation_about(axis: int, angle: float) -> np.ndarray:
    v = np.zeros(3)
    v[axis] = angle
    return v


@register("hmr", "embedded+smplx")
class SmplxHMR:
    """Promptable SMPL-X fit (torch, CPU is fine: ~1-3 s a person)."""

    def __init__(self, body: str = "smplx", model_dir: str | None = None, gender: str = "neutral",
                 iterations: int = 60) -> None:  # fmt: skip
        self.body: SmplxBody = create("body", body, model_dir=model_dir, gender=gender)
        self.iterations = iterations

    def warmup(self) -> None:
        _ = self.body.model

    def add_native_pose(self, fit: BodyFit) -> None:
        """SMPLXParams already are SMPL-X's own parameters."""

    # ------------------------------------------------------------------------------------- targets

    def _targets(self, person: PersonDetection, prompts: dict[str, tuple[float, float]]) -> _Targets:
        known = self.body.keypoint_names()
        unknown = sorted(set(prompts) - known)
        if unknown:
            raise BadPromptError(f"unknown joint name(s) for a keypoint prompt with SMPL-X: {', '.join(unknown)}")
        kp = person.keypoints2d
        hands = {s: sum(n.startswith(f"{s}_hand_") for n in kp.names) >= 5 for s in ("left", "right")}
        world = dict(zip(person.keypoints3d_hip.names, person.keypoints3d_hip.xyz_k3, strict=True))
        by_name: dict[str, tuple[np.ndarray, float]] = {}
        for name, xy, conf in zip(kp.names, kp.xy_k2, kp.conf_k, strict=True):
            side = name.split("_")[0]
            if name not in known or not np.isfinite(xy).all():
                continue
            if hands.get(side) and name.split("_", 1)[-1] in _COARSE_HAND:
                continue
            by_name[name] = (np.asarray(xy, dtype=np.float64), float(conf) if conf > 0.3 else 0.0)
        for name, xy in prompts.items():
            by_name[name] = (np.asarray(xy, dtype=np.float64), PROMPT_WEIGHT)
        names = [n for n, (_, w) in by_name.items() if w > 0]
        return _Targets(
            names=names,
            smplx_names=[KEYPOINT_TO_SMPLX[n] for n in names],
            xy_k2=np.array([by_name[n][0] for n in names]).reshape(-1, 2),
            weight_k=np.array([by_name[n][1] for n in names]),
            hip3d_k3=np.array([world.get(n, (np.nan,) * 3) if n not in prompts else (np.nan,) * 3
                               for n in names], dtype=np.float64).reshape(-1, 3),  # fmt: skip
            hands=hands,
        )

    # ---------------------------------------------------------------------------------------- init

    def _initial(self, tg: _Targets, camera: Camera, focal_px: float) -> SmplxFitState:
        """Facing the camera (or away, from the shoulders' order), at the depth of the torso's size."""
        pos = dict(zip(tg.names, tg.xy_k2, strict=True))
        facing = "left_shoulder" not in pos or "right_shoulder" not in pos or \
            pos["left_shoulder"][0] >= pos["right_shoulder"][0]  # fmt: skip
        orient = _rotation_about(0, math.pi) if facing else _rotation_about(2, math.pi)
        joints = self.body.model.J_regressor.numpy() @ self.body.model.v_template.numpy()
        names = self.body.joint_names
        j = {n: joints[names.index(n)] for n in ("pelvis", "left_shoulder", "right_shoulder", "left_hip", "right_hip")}
        torso_m = np.linalg.norm((j["left_shoulder"] + j["right_shoulder"]) / 2 - (j["left_hip"] + j["right_hip"]) / 2)
        centre = np.mean(tg.xy_k2, axis=0) if len(tg.xy_k2) else np.array([camera.width / 2, camera.height / 2])
        depth = 3.0
        if all(n in pos for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")):
            hips = (pos["left_hip"] + pos["right_hip"]) / 2
            torso_px = np.linalg.norm((pos["left_shoulder"] + pos["right_shoulder"]) / 2 - hips)
            depth = float(np.clip(focal_px * torso_m / max(torso_px, 1.0), 0.5, 50.0))
            centre = hips
        ray = np.array([(centre[0] - camera.K_33[0, 2]) / focal_px, (centre[1] - camera.K_33[1, 2]) / focal_px, 1.0])
        return SmplxFitState(betas=np.zeros(NUM_BETAS), global_orient_3=orient, body_pose_j3=np.zeros((21, 3)),
                             left_hand_j3=np.zeros((15, 3)), right_hand_j3=np.zeros((15, 3)),
                             root_pos_3=depth * ray - j["pelvis"], focal_px=focal_px)  # fmt: skip

    # ----------------------------------------------------------------------------------------- fit

    def fit(self, camera: Camera, person: PersonDetection, prompts: dict[str, tuple[float, float]] | None = None,
            warm: SmplxFitState | None = None, estimate_focal: bool = False, focal_prior_px: float | None = None,
            fast: bool = False, image_rgb_hw3: np.ndarray | None = None) -> SmplxPersonFit:  # fmt: skip
        """Fit SMPL-X to one person (see the module docstring); `fast`: fewer iterations (prompt edits)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: one thread is 4-5x faster than two on a busy 2-core CPU
        try:
            return self._fit(camera, person, prompts, warm, estimate_focal, focal_prior_px, fast)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, camera: Camera, person: PersonDetection, prompts: dict[str, tuple[float, float]] | None,
             warm: SmplxFitState | None, estimate_focal: bool, focal_prior_px: float | None,
             fast: bool) -> SmplxPersonFit:  # fmt: skip
        import torch

        tg = self._targets(person, prompts or {})
        prior_f = float(focal_prior_px or camera.focal_px)
        state = warm.copy() if warm is not None else self._initial(tg, camera, prior_f if estimate_focal
                                                                   else camera.focal_px)  # fmt: skip
        if not estimate_focal:
            state.focal_px = camera.focal_px
        dt = torch.float32
        v = {k: torch.tensor(np.asarray(getattr(state, k)), dtype=dt, requires_grad=True)
             for k in ("betas", "global_orient_3", "body_pose_j3", "left_hand_j3", "right_hand_j3", "root_pos_3")}
        log_f = torch.tensor(math.log(state.focal_px), dtype=torch.float64, requires_grad=estimate_focal)
        xy = torch.tensor(tg.xy_k2, dtype=dt)
        w = torch.tensor(tg.weight_k, dtype=dt)
        c = torch.tensor(camera.K_33[:2, 2], dtype=dt)
        has3d = np.isfinite(tg.hip3d_k3).all(axis=1)
        hip_names = [n for n in ("left_hip", "right_hip") if n in tg.names]
        use3d = has3d.sum() >= 4 and len(hip_names) == 2 and has3d[[tg.names.index(n) for n in hip_names]].all()
        if use3d:
            lm = tg.hip3d_k3 - tg.hip3d_k3[[tg.names.index(n) for n in hip_names]].mean(axis=0)
            lm3d = torch.tensor(np.nan_to_num(lm), dtype=dt)
            w3d = torch.tensor(has3d * np.minimum(tg.weight_k, 1.0), dtype=dt)
            hip_idx = [tg.names.index(n) for n in hip_names]
        hands = (v["left_hand_j3"], v["right_hand_j3"])

        def loss() -> torch.Tensor:
            kp = self.body.keypoints(tg.smplx_names, v["betas"], v["global_orient_3"], v["body_pose_j3"],
                                     v["root_pos_3"], hands)  # fmt: skip
            f = torch.exp(log_f).to(dt)
            z = torch.clamp(kp[:, 2:3], min=1e-3)
            proj = f * kp[:, :2] / z + c
            r2 = ((proj - xy) ** 2).sum(dim=1) / PIXEL_SCALE**2
            total = (w * (torch.sqrt(1.0 + r2) - 1.0)).sum()
            if use3d:
                rel = kp - kp[hip_idx].mean(dim=0)
                d2 = ((rel - lm3d) ** 2).sum(dim=1) / LANDMARK_SCALE_M**2
                total = total + LANDMARK_WEIGHT * (w3d * (torch.sqrt(1.0 + d2) - 1.0)).sum()
            total = total + POSE_PRIOR * (v["body_pose_j3"] ** 2).sum() + SHAPE_PRIOR * (v["betas"] ** 2).sum()
            total = total + HAND_PRIOR * (v["left_hand_j3"] ** 2 + v["right_hand_j3"] ** 2).sum()
            if estimate_focal:
                total = total + 0.5 * ((log_f - math.log(prior_f)) / FOCAL_SIGMA_LOG).to(dt) ** 2
            return total

        def run(variables: list[torch.Tensor], iters: int) -> int:
            opt = torch.optim.LBFGS(variables, lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
            count = [0]

            def closure() -> torch.Tensor:
                opt.zero_grad()
                value = loss()
                value.backward()
                count[0] += 1
                return value

            opt.step(closure)
            return count[0]

        n = 0
        if len(tg.names):
            if warm is None:  # the root first: where the body is and which way it faces
                n += run([v["global_orient_3"], v["root_pos_3"]], 20)
            body_vars = [v["global_orient_3"], v["root_pos_3"], v["body_pose_j3"], v["betas"]]
            body_vars += [v[f"{s}_hand_j3"] for s in ("left", "right") if tg.hands.get(s)]
            if estimate_focal:
                body_vars.append(log_f)
            n += run(body_vars, max(15, self.iterations // 2) if fast else self.iterations)
        arrays = {k: t.detach().numpy().astype(np.float64) for k, t in v.items()}
        state = SmplxFitState(**arrays, focal_px=float(math.exp(float(log_f.detach()))))
        report = SmplxFitReport(state=state, err_px_k=np.zeros(0), iterations=n,
                                focal_log_var=FOCAL_SIGMA_LOG**2 if estimate_focal else None)  # fmt: skip
        body = self.to_body_fit(state, tg, camera, report)
        return SmplxPersonFit(body, state, report)

    def to_body_fit(self, state: SmplxFitState, tg: _Targets, camera: Camera, report: SmplxFitReport) -> BodyFit:
        params = SMPLXParams(betas=state.betas, global_orient_3=state.global_orient_3, body_pose_j3=state.body_pose_j3,
                             transl_3=state.root_pos_3, focal_px=np.array(state.focal_px),
                             left_hand_pose_j3=state.left_hand_j3, right_hand_pose_j3=state.right_hand_j3,
                             gender=np.array(self.body.gender))  # fmt: skip
        verts_v3, names, joints_j3 = self.body.posed(params)
        import torch

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(a, dtype=torch.float32)

        with torch.no_grad():
            kp = self.body.keypoints(tg.smplx_names, t(state.betas), t(state.global_orient_3), t(state.body_pose_j3),
                                     t(state.root_pos_3), (t(state.left_hand_j3), t(state.right_hand_j3)))
        kp = kp.numpy().astype(np.float64)
        cam = replace(camera, K_33=np.array([[state.focal_px, 0, camera.K_33[0, 2]], [0, state.focal_px,
                                             camera.K_33[1, 2]], [0, 0, 1]]))  # fmt: skip
        err = np.linalg.norm(cam.project(kp) - tg.xy_k2, axis=1) if len(kp) else np.zeros(0)
        report.err_px_k = err
        return BodyFit(
            model="smplx",
            params=params,
            verts_cam_v3=verts_v3,
            faces_f3=self.body.faces_f3,
            joints3d_cam=Keypoints3D(names, joints_j3, frame="cam"),
            height_m=self.body.height_m(state.betas),
            reprojection_px_mean=float(err.mean()) if len(err) else float("nan"),
            reprojection_px_max=float(err.max()) if len(err) else float("nan"),
            per_keypoint_px={n: float(e) for n, e in zip(tg.names, err, strict=True)},
        )

