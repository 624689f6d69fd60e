"""The fitting loop: initialise (analytic or warm start), then damped Gauss-Newton (LM) steps."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, lru_cache

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from pipelines.body.anny_model import FIT_PHENOTYPES, AnnyBody, RestState
from pipelines.body.anny_points import build_point_set
from pipelines.hmr.fit import FitOptions, FitReport, FitState, FitTargets, _Problem, apply_update
from pipelines.hmr.init import analytic_init
from pipelines.hmr.kinematics import PointModel, Skeleton
from pipelines.hmr.prior import PriorTerms, body_bone_priors, finger_bone_priors

MAX_BATCH = 16
"""Most people fitted together in one batch (BodyFitter.fit_many)."""


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


class BodyFitter:
    """Fits one body model to one person's targets; reusable across people and frames."""

    def __init__(self, body: AnnyBody) -> None:
        self.body = body
        self._skel: Skeleton | None = None
        self._surface: PointModel | None = None

    @property
    def skel(self) -> Skeleton:
        if self._skel is None:
            self._skel = Skeleton(self.body.bone_parents)
        return self._skel

    @lru_cache(maxsize=16)  # noqa: B019 - one fitter per process, keyed by name tuples
    def point_model(self, names: tuple[str, ...]) -> PointModel:
        return PointModel(build_point_set(self.body, list(names)), self.skel, len(self.body.bone_labels))

    def surface_model(self, n_samples: int) -> PointModel:
        """Surface samples for the silhouette term: vertices spread over the body (no fingers/face detail)."""
        if self._surface is None or len(self._surface.points.names) != n_samples:
            v = self.body.template_v3
            rng = np.random.default_rng(0)
            idx = np.sort(rng.choice(len(v), size=n_samples, replace=False))
            mat = sp.csr_matrix((np.ones(n_samples), (np.arange(n_samples), idx)), shape=(n_samples, len(v)))
            ps = self.body.point_set([f"v{i}" for i in idx], mat)
            self._surface = PointModel(ps, self.skel, len(self.body.bone_labels))
        return self._surface

    def _active(self, names: list[str]) -> tuple[np.ndarray, dict]:
        labels = self.body.bone_labels
        priors = body_bone_priors()
        for side, short in (("left", "L"), ("right", "R")):
            if sum(n.startswith(f"{side}_hand_") for n in names) >= 5:
                priors.update(finger_bone_priors(short))
        bones = {0} | {labels.index(n) for n in priors}
        order = [b for b in self.skel.order if b in bones]
        return np.array(order), priors

    @cached_property
    def chain_children(self) -> dict[int, int]:
        """Bone -> the child that continues its chain (e.g. the forearm for the upper arm), used for the
        prior's bone axes; depends on the rig only."""
        labels = self.body.bone_labels
        children: dict[int, int] = {}
        for j in self.skel.order[::-1]:
            if self.skel.parents[j] >= 0:
                children[int(self.skel.parents[j])] = int(j)
        for j, lab in enumerate(labels):
            for a, b in (("upperarm01", "lowerarm01"), ("upperleg01", "lowerleg01"), ("lowerarm01", "wrist"),
                         ("lowerleg01", "foot")):  # fmt: skip
                if lab.startswith(a):
                    children[j] = labels.index(b + lab[len(a) :])
        return children

    def fit(self, targets: FitTargets, K_33: np.ndarray, opts: FitOptions, warm: FitState | None = None, *,
            problem_factory: Callable[..., _Problem] = _Problem) -> FitReport:  # fmt: skip
        """Fit `targets`; `problem_factory` builds the residuals (default: one camera, K_33) with _Problem's
        arguments (pipelines.multiview.body_fit passes one that sees every camera)."""
        # The fit's matrices are small (~100-200 columns): one BLAS thread solves them 5-50x faster than
        # OpenBLAS's thread pool, whose threads wait for each other (worst on a busy machine).
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._fit(targets, K_33, opts, warm, problem_factory)

    def fit_many(self, targets: list[FitTargets], K_33: np.ndarray, opts: FitOptions,
                 warms: list[FitState | None]) -> list[FitReport]:  # fmt: skip
        """Fit several people seen by one camera with the same options: together (pipelines.hmr.batch_fit,
        the same fits up to rounding, faster) unless the options need the one-by-one fit (free bone lengths).
        A batch that raises np.linalg.LinAlgError is refitted one person at a time; a person whose own fit
        raises too makes this raise (the caller falls back to fit() per person, see ImagePipeline._fit_people)."""
        if len(targets) < 2 or opts.sigma_length > 0:
            return [self.fit(tg, K_33, opts, w) for tg, w in zip(targets, warms, strict=True)]
        from pipelines.hmr.batch_fit import fit_batch

        # People with the same active bones (hands found or not) share a batch: a union with fingers that
        # most people do not move would only add masked columns to everyone's solve.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, tg in enumerate(targets):
            active, _ = self._active([n for n, c in zip(tg.names, tg.conf_k, strict=True) if c > 0.2])
            groups.setdefault(tuple(active.tolist()), []).append(i)
        # A person alone with its active bones joins the smallest group whose bones include its own (e.g. one
        # hand found among people with both): a few masked columns cost less than a fit of its own.
        for key in sorted(groups, key=len):
            if len(groups[key]) == 1:
                hosts = [k for k in groups if k != key and groups[k] and set(key) <= set(k)]
                if hosts:
                    groups[min(hosts, key=len)] += groups.pop(key)
        # At most MAX_BATCH people a batch: the stacked Jacobians grow with the people (~2 MB a person).
        batches = [idx[k : k + MAX_BATCH] for idx in groups.values() for k in range(0, len(idx), MAX_BATCH)]
        out: list[FitReport | None] = [None] * len(targets)
        with _blas_controller().limit(limits=1, user_api="blas"):
            for idx in batches:
                if len(idx) == 1:
                    reps = [self._fit(targets[idx[0]], K_33, opts, warms[idx[0]])]
                else:
                    try:
                        reps = fit_batch(self, [targets[i] for i in idx], K_33, opts, [warms[i] for i in idx])
                    except np.linalg.LinAlgError:
                        # numpy's stacked solvers raise for the whole stack when one person's matrix fails
                        # (a NaN, a singular system): this batch one person at a time, so that only that
                        # person's own fit can fail (and raise, as BodyFitter.fit does).
                        reps = [self._fit(targets[i], K_33, opts, warms[i]) for i in idx]
                for i, rep in zip(idx, reps, strict=True):
                    out[i] = rep
        return out  # type: ignore[return-value]

    def _fit(self, targets: FitTargets, K_33: np.ndarray, opts: FitOptions, warm: FitState | None,
             problem_factory: Callable[..., _Problem] = _Problem) -> FitReport:  # fmt: skip
        body = self.body
        names = list(targets.names)
        pm = self.point_model(tuple(names))
        active, priors = self._active([n for n, c in zip(names, targets.conf_k, strict=True) if c > 0.2])
        sub_aj = self.skel.subtree_matrix(active)
        focal = float(K_33[0, 0]) if warm is None or not opts.fit_focal else warm.focal_px
        surface = self.surface_model(opts.mask_samples) if targets.mask_hw is not None else None
        problem = problem_factory(body, self.skel, pm, targets, K_33, opts, surface)

        pheno = warm.pheno_p.copy() if warm is not None else body.default_pheno()
        rest = body.rest_heads(pheno)
        prior = PriorTerms.build(priors, body.bone_labels, rest.heads_j3, self.skel.parents, self.chain_children)

        if warm is not None:
            state = warm.copy()
            state.focal_px = focal
        else:
            local, root = analytic_init(self.skel, body.bone_labels, pm, rest, names, targets.xy_k2,
                                        targets.conf_k, targets.hip3d_k3, focal, K_33[:2, 2])  # fmt: skip
            state = FitState(local, root, pheno, focal)
        if len(state.length_scale_l) != problem.n_length:
            state.length_scale_l = np.zeros(problem.n_length)

        shape_idx = [body.phenotype_labels.index(n) for n in FIT_PHENOTYPES]
        n_done = 0
        focal_log_var = None
        # Two phases: pose and translation, then shape and focal too. A phase that stops improving
        # hands over to the next one (the shape and focal iterations always run).
        phases = [(False, opts.pose_iters)]
        if opts.fit_shape or opts.fit_focal:
            phases.append((True, opts.shape_iters))
        final = None
        for late, n_phase in phases:
            free_shape, free_focal = opts.fit_shape and late, opts.fit_focal and late
            state, rest, n, var, last = self._lm(problem, state, rest, active, sub_aj, prior, shape_idx, n_phase,
                                                 free_shape, free_focal)  # fmt: skip
            n_done += n
            focal_log_var = var if free_focal else focal_log_var
            # the last accepted step's residuals are the final state's, where they were built as below
            final = last if not (free_shape or free_focal) else None
        if final is None:
            final = problem.build(state, rest, active, sub_aj, prior, False, False, False)
        r, _, (x, uv, G, o) = final
        used = problem.sqrt_w2d > 0
        err = np.where(used, np.linalg.norm(uv - problem.xy_obs, axis=1), np.nan)
        return FitReport(state, rest, G, o, uv, err, n_done, float(r @ r), focal_log_var)

    def _lm(self, problem: _Problem, state: FitState, rest: RestState, active: np.ndarray, sub_aj: np.ndarray,
            prior: PriorTerms, shape_idx: list[int], n_iter: int, free_shape: bool, free_focal: bool
            ) -> tuple[FitState, RestState, int, float | None, tuple | None]:  # fmt: skip
        """Up to n_iter Levenberg-Marquardt iterations (fewer when no step improves); returns the state, its
        rest state, the iterations run, with a free focal the variance of log(focal), and the build (without
        Jacobian) of the returned state when the last iteration's step was accepted, else None (_fit reuses it
        instead of building that state's residuals again)."""
        body = self.body
        lam = 1e-3
        focal_log_var = None
        n_done = 0
        last = None
        for _ in range(n_iter):
            n_done += 1
            last = None
            r, J, (_, _, G, _) = problem.build(state, rest, active, sub_aj, prior, free_shape, free_focal, True)
            cost = float(r @ r)
            JtJ = J.T @ J
            g = J.T @ r
            diag = np.diag(JtJ).copy() + 1e-9
            if free_focal:
                # Posterior variance of log(focal), the other variables marginalised (the last column).
                try:
                    focal_log_var = float(np.linalg.inv(JtJ + 1e-9 * np.diag(diag))[-1, -1])
                except np.linalg.LinAlgError:
                    focal_log_var = None
            for _ in range(5):
                step = np.linalg.solve(JtJ + lam * np.diag(diag), -g)
                cand = apply_update(self.skel, state, G, active, step, shape_idx, free_shape, free_focal,
                                    problem.n_length)
                cand_rest = body.rest_heads(cand.pheno_p) if free_shape else rest
                built = problem.build(cand, cand_rest, active, sub_aj, prior, free_shape, free_focal, False)
                r_new = built[0]
                if r_new @ r_new < cost:
                    drop = cost - float(r_new @ r_new)
                    state, rest, cost, last = cand, cand_rest, float(r_new @ r_new), built
                    lam = max(lam / 3, 1e-7)
                    break
                lam *= 6
            else:
                break
            if drop < problem.stop_rel * (cost + drop):  # _Problem.stop_rel: this step gained too little
                break
        return state, rest, n_done, focal_log_var, last


__all__ = ["BodyFitter", "FitOptions", "FitState", "FitTargets", "FitReport", "RestState"]
