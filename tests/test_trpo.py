"""Trust-region machinery: conjugate gradient, the line search and a full MAML-TRPO meta-update."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import metarl.learners.maml_trpo
import metarl.trpo
from metarl.adaptation import adapt, process_episodes
from metarl.families import make_family
from metarl.learners.maml_trpo import TRPOSettings, maml_trpo_step
from metarl.policies import GaussianMLPPolicy
from metarl.sampler import Sampler
from metarl.task_api import seed_family
from metarl.trpo import conjugate_gradient, line_search

DT = torch.float64


# ---------------------------------------------------------------------------------------
# Conjugate gradient.


def random_spd(n: int, eigenvalues: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    return q @ torch.diag(eigenvalues) @ q.T


def test_conjugate_gradient_solves_random_spd_system() -> None:
    n = 10
    a = random_spd(n, torch.linspace(1.0, 20.0, n, dtype=DT), seed=0)
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(1))
    expected = torch.linalg.solve(a, b)
    calls = []

    def avp(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return a @ v

    x = conjugate_gradient(avp, b, iters=n, residual_tol=1e-30)
    assert x.shape == (n,)
    assert float((x - expected).norm() / expected.norm()) < 1e-6
    assert float((a @ x - b).norm()) < 1e-6
    assert len(calls) <= n


def test_conjugate_gradient_more_iterations_than_dimensions_stays_finite() -> None:
    """Past convergence it stops on the documented criterion ``|r|^2 < residual_tol`` instead of dividing by ~0."""
    n = 10
    a = random_spd(n, torch.linspace(1.0, 20.0, n, dtype=DT), seed=2)
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(3))
    x = conjugate_gradient(lambda v: a @ v, b, iters=50)
    assert bool(torch.isfinite(x).all())
    assert float(((a @ x - b) ** 2).sum()) < 1e-10
    assert float((x - torch.linalg.solve(a, b)).norm() / torch.linalg.solve(a, b).norm()) < 1e-5


def test_conjugate_gradient_converges_in_as_many_steps_as_distinct_eigenvalues() -> None:
    """A Krylov method property that steepest descent or a wrong update of p would not have."""
    n = 10
    eig = torch.tensor([1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0, 9.0, 9.0, 9.0], dtype=DT)
    a = random_spd(n, eig, seed=4)
    b = torch.randn(n, dtype=DT, generator=torch.Generator().manual_seed(5))
    x = conjugate_gradient(lambda v: a @ v, b, iters=3, residual_tol=1e-30)
    expected = torch.linalg.solve(a, b)
    assert float((x - expected).norm() / expected.norm()) < 1e-8
    # while two iterations are not enough
    x2 = conjugate_gradient(lambda v: a @ v, b, iters=2, residual_tol=1e-30)
    assert float((x2 - expected).norm() / expected.norm()) > 1e-3


def test_conjugate_gradient_zero_rhs_gives_zero() -> None:
    x = conjugate_gradient(lambda v: 3.0 * v, torch.zeros(5, dtype=DT), iters=10)
    assert torch.equal(x, torch.zeros(5, dtype=DT))


def test_conjugate_gradient_rejects_non_flat_rhs() -> None:
    with pytest.raises(ValueError, match="flat"):
        conjugate_gradient(lambda v: v, torch.ones(2, 3, dtype=DT))


# ---------------------------------------------------------------------------------------
# Line search.


class Recorder:
    """A synthetic ``fraction -> (loss, kl)`` that records the fractions it was asked for."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.fractions: list[float] = []

    def __call__(self, fraction: float) -> tuple[float, float]:
        self.fractions.append(fraction)
        return self.fn(fraction)


def test_line_search_accepts_first_fraction_that_improves_within_kl() -> None:
    # KL = 0.02 f^2 violates max_kl = 0.01 for f = 1 and 0.8 (0.0128), holds for 0.64 (0.0082).
    evaluate = Recorder(lambda f: (1.0 - f, 0.02 * f * f))
    result = line_search(evaluate, loss_before=1.0, max_kl=0.01, max_steps=10, backtrack_ratio=0.8)
    assert result.accepted
    assert result.step_fraction == pytest.approx(0.64)
    assert result.backtracks == 2
    assert result.loss == pytest.approx(0.36)
    assert result.kl == pytest.approx(0.02 * 0.64**2)
    assert evaluate.fractions == pytest.approx([1.0, 0.8, 0.64])


def test_line_search_backtracks_past_non_improving_steps() -> None:
    # The loss only improves for f < 0.3: 1, 0.5, 0.25 -> accepted at 0.25 after 2 backtracks.
    evaluate = Recorder(lambda f: (1.0 + (f - 0.3), 0.0))
    result = line_search(evaluate, loss_before=1.0, max_kl=0.01, max_steps=10, backtrack_ratio=0.5)
    assert result.accepted
    assert result.step_fraction == pytest.approx(0.25)
    assert result.backtracks == 2
    assert result.loss == pytest.approx(0.95)


def test_line_search_accepts_full_step_without_backtracking() -> None:
    evaluate = Recorder(lambda f: (-f, 0.001 * f))
    result = line_search(evaluate, loss_before=0.0, max_kl=0.01)
    assert result.accepted and result.step_fraction == 1.0 and result.backtracks == 0
    assert evaluate.fractions == [1.0]


def test_line_search_kl_bound_is_inclusive() -> None:
    result = line_search(lambda f: (-1.0, 0.01), loss_before=0.0, max_kl=0.01)
    assert result.accepted and result.backtracks == 0


def test_line_search_rejects_when_every_candidate_violates_kl() -> None:
    evaluate = Recorder(lambda f: (-100.0, 1.0))  # a great loss, but always outside the trust region
    result = line_search(evaluate, loss_before=0.0, max_kl=0.01, max_steps=7, backtrack_ratio=0.5)
    assert not result.accepted
    assert result.step_fraction == 0.0
    assert result.backtracks == 7
    assert result.loss == 0.0 and result.kl == 0.0
    assert evaluate.fractions == pytest.approx([0.5**i for i in range(7)])


def test_line_search_rejects_when_no_candidate_improves() -> None:
    # Equal loss is not an improvement: the comparison is strict.
    evaluate = Recorder(lambda f: (2.0 + f * (f - 0.5), 0.0) if f > 0.5 else (2.0, 0.0))
    result = line_search(evaluate, loss_before=2.0, max_kl=0.01, max_steps=5, backtrack_ratio=0.8)
    assert not result.accepted
    assert result.step_fraction == 0.0
    assert result.backtracks == 5
    assert result.loss == 2.0
    assert len(evaluate.fractions) == 5


# ---------------------------------------------------------------------------------------
# A full MAML-TRPO meta-update on 2D navigation.

NUM_TASKS, EPISODES, HORIZON, GAMMA, GAE_LAMBDA = 4, 4, 20, 0.99, 1.0


def navigation_problem(num_steps: int, fast_lr: float, seed: int = 0):
    """A float64 16-unit policy, 4 Navigation2D tasks, ``num_steps`` inner batches and a valid batch."""
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(2, 2, hidden_sizes=(16,), activation="tanh").double()
    family = make_family("Navigation2D")
    seed_family(family, seed)
    tasks = family.unwrapped.sample_tasks(NUM_TASKS)
    sampler = Sampler("Navigation2D", policy, horizon=HORIZON, seed=seed)

    def sample(params):
        episodes = sampler.sample({n: p.detach().float() for n, p in params.items()}, tasks, EPISODES)
        return process_episodes(episodes.to("cpu", DT), GAMMA, GAE_LAMBDA)

    params = policy.get_params()
    trains = []
    for _ in range(num_steps):
        trains.append(sample(params))
        params = adapt(policy, policy.get_params(), trains, fast_lr, create_graph=False)
    valid = sample(params)
    return policy, trains, valid


def ref_adapted(policy, params, trains, k, fast_lr):
    """Task k's adapted parameters, one plain policy-gradient step per batch (torch.distributions)."""
    params = {n: p if p.requires_grad else p.detach().clone().requires_grad_(True) for n, p in params.items()}
    for batch in trains:
        mean, log_std = policy.distribution(params, batch.obs[k])
        logp = Normal(mean, log_std.exp()).log_prob(batch.actions[k]).sum(-1)
        loss = -(batch.weights[k] * logp * batch.advantages[k]).sum()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        params = {n: p - fast_lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def ref_task_objective(policy, adapted, theta_old, trains, valid, k, fast_lr):
    """Task k's surrogate loss and KL(old || new) at given adapted parameters, old = adapted ``theta_old``."""
    old_mean, old_log_std = (
        d.detach() for d in policy.distribution(ref_adapted(policy, theta_old, trains, k, fast_lr), valid.obs[k])
    )
    old = Normal(old_mean, old_log_std.exp())
    mean, log_std = policy.distribution(adapted, valid.obs[k])
    new = Normal(mean, log_std.exp())
    a = valid.actions[k]
    ratio = torch.exp(new.log_prob(a).sum(-1) - old.log_prob(a).sum(-1))
    loss = -(valid.weights[k] * ratio * valid.advantages[k]).sum()
    kl = (valid.weights[k] * kl_divergence(old, new).sum(-1)).sum()
    return loss, kl


def ref_objective(policy, theta, theta_old, trains, valid, fast_lr):
    """Mean over tasks of the surrogate loss and KL of meta-parameters ``theta``, computed from scratch."""
    terms = [
        ref_task_objective(policy, ref_adapted(policy, theta, trains, k, fast_lr), theta_old, trains, valid, k, fast_lr)
        for k in range(valid.obs.shape[0])
    ]
    return torch.stack([t[0] for t in terms]).mean(), torch.stack([t[1] for t in terms]).mean()


def snapshot(policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.get_params().items()}


@pytest.mark.parametrize(
    "num_steps,first_order,exact_hvp,subsample",
    [(1, False, False, 1), (1, True, False, 1), (2, False, False, 1), (1, False, True, 1), (1, False, False, 2)],
)
def test_maml_trpo_step_improves_surrogate_within_trust_region(
    num_steps: int, first_order: bool, exact_hvp: bool, subsample: int
) -> None:
    cfg = TRPOSettings(
        fast_lr=0.1, first_order=first_order, max_kl=1e-2, exact_hvp=exact_hvp, curvature_subsample=subsample
    )
    policy, trains, valid = navigation_problem(num_steps, cfg.fast_lr)
    theta_old = snapshot(policy)
    loss_old, kl_old = (
        float(x.detach()) for x in ref_objective(policy, theta_old, theta_old, trains, valid, cfg.fast_lr)
    )
    assert kl_old == pytest.approx(0.0, abs=1e-15)

    stats = maml_trpo_step(policy, trains, valid, cfg)

    theta_new = snapshot(policy)
    assert stats.accepted  # the seeds are fixed; a rejected step would make the checks below vacuous
    assert 0.0 < stats.step_fraction <= 1.0
    assert any(not torch.equal(theta_new[n], theta_old[n]) for n in theta_old)
    loss_new, kl_new = (
        float(x.detach()) for x in ref_objective(policy, theta_new, theta_old, trains, valid, cfg.fast_lr)
    )
    # Recomputed independently of maml.py: inside the trust region (up to float64 rounding
    # of a different summation order) and a strictly lower surrogate loss.
    assert kl_new <= cfg.max_kl * (1.0 + 1e-9)
    assert kl_new > 0.0
    assert loss_new < loss_old
    # The reported statistics agree with the recomputation.
    assert stats.loss_before == pytest.approx(loss_old, rel=1e-9, abs=1e-12)
    assert stats.loss_after == pytest.approx(loss_new, rel=1e-9, abs=1e-12)
    assert stats.kl_after == pytest.approx(kl_new, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_trpo_step_reports_the_meta_gradient_norm(first_order: bool) -> None:
    cfg = TRPOSettings(fast_lr=0.1, first_order=first_order, curvature_subsample=1)
    policy, trains, valid = navigation_problem(1, cfg.fast_lr)
    theta_old = snapshot(policy)
    leaves = {n: p.clone().requires_grad_(True) for n, p in theta_old.items()}
    if first_order:  # sum over tasks of the gradient at the adapted parameters
        k_total = valid.obs.shape[0]
        grads = [torch.zeros_like(p) for p in leaves.values()]
        for k in range(k_total):
            adapted = {
                n: p.detach().requires_grad_(True)
                for n, p in ref_adapted(policy, theta_old, trains, k, cfg.fast_lr).items()
            }
            loss_k, _ = ref_task_objective(policy, adapted, theta_old, trains, valid, k, cfg.fast_lr)
            for g, gk in zip(grads, torch.autograd.grad(loss_k / k_total, list(adapted.values()))):
                g += gk
    else:
        loss, _ = ref_objective(policy, leaves, theta_old, trains, valid, cfg.fast_lr)
        grads = torch.autograd.grad(loss, list(leaves.values()))
    expected = float(torch.cat([g.reshape(-1) for g in grads]).norm())
    stats = maml_trpo_step(policy, trains, valid, cfg)
    assert expected > 0.0
    assert stats.grad_norm == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("num_steps,first_order", [(1, False), (1, True), (2, False)])
def test_maml_trpo_step_with_precomputed_adaptation_is_the_same_update(num_steps: int, first_order: bool) -> None:
    cfg = TRPOSettings(fast_lr=0.1, first_order=first_order, curvature_subsample=1)
    policy, trains, valid = navigation_problem(num_steps, cfg.fast_lr)
    theta_old = snapshot(policy)
    stats = maml_trpo_step(policy, trains, valid, cfg)
    theta_plain = snapshot(policy)
    policy.load_params(theta_old)
    adapted = adapt(policy, policy.get_params(), trains, cfg.fast_lr, first_order, create_graph=True)
    stats_pre = maml_trpo_step(policy, trains, valid, cfg, adapted=adapted)
    assert stats.accepted and stats_pre.accepted
    assert stats_pre.step_fraction == stats.step_fraction
    assert any(not torch.equal(theta_plain[n], theta_old[n]) for n in theta_old)
    theta_pre = snapshot(policy)
    for n in theta_old:
        torch.testing.assert_close(theta_pre[n], theta_plain[n], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("num_steps,first_order", [(1, False), (1, True), (2, False)])
def test_maml_trpo_step_fast_hvp_takes_the_exact_hvp_step(num_steps: int, first_order: bool) -> None:
    """The whole update with the fast HVP equals the one with the textbook third-order HVP."""
    policy, trains, valid = navigation_problem(num_steps, 0.1)
    theta_old = snapshot(policy)
    results = {}
    for exact in (False, True):
        policy.load_params(theta_old)
        stats = maml_trpo_step(
            policy,
            trains,
            valid,
            TRPOSettings(fast_lr=0.1, first_order=first_order, exact_hvp=exact, curvature_subsample=1),
        )
        assert stats.accepted
        results[exact] = (stats, snapshot(policy))
    (fast_stats, fast_theta), (exact_stats, exact_theta) = results[False], results[True]
    assert fast_stats.step_fraction == exact_stats.step_fraction
    step_fast = torch.cat([(fast_theta[n] - theta_old[n]).reshape(-1) for n in theta_old])
    step_exact = torch.cat([(exact_theta[n] - theta_old[n]).reshape(-1) for n in theta_old])
    assert float(step_exact.norm()) > 0.0
    assert float((step_fast - step_exact).norm() / step_exact.norm()) < 1e-6


@pytest.mark.parametrize("how", ["no_candidate_improves", "every_candidate_violates_kl"])
def test_rejected_step_leaves_parameters_unchanged(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Force a provable rejection while the real line search still evaluates real candidate steps.

    The real ``line_search`` runs on the real candidates, but with ``loss_before = -inf`` (no
    finite loss is lower) or ``max_kl = -1`` (no KL is lower): every candidate is rejected.
    """
    real_line_search = metarl.trpo.line_search
    seen: dict[str, object] = {}

    def forced(evaluate, loss_before, max_kl, max_steps=15, backtrack_ratio=0.8):
        def recording(fraction: float) -> tuple[float, float]:
            loss, kl = evaluate(fraction)
            seen.setdefault("candidates", []).append((fraction, loss, kl))  # type: ignore[union-attr]
            return loss, kl

        seen["loss_before"] = loss_before
        if how == "no_candidate_improves":
            return real_line_search(recording, -math.inf, max_kl, max_steps, backtrack_ratio)
        return real_line_search(recording, loss_before, -1.0, max_steps, backtrack_ratio)

    monkeypatch.setattr(metarl.learners.maml_trpo, "line_search", forced)
    monkeypatch.setattr(metarl.trpo, "line_search", forced)

    cfg = TRPOSettings(fast_lr=0.1, ls_max_steps=4, curvature_subsample=1)
    policy, trains, valid = navigation_problem(1, cfg.fast_lr)
    theta_old = snapshot(policy)
    stats = maml_trpo_step(policy, trains, valid, cfg)

    candidates = seen["candidates"]
    assert len(candidates) == cfg.ls_max_steps  # type: ignore[arg-type]
    # the candidates were genuine moves of theta: their losses differ from the old loss
    assert any(loss != seen["loss_before"] for _, loss, _ in candidates)  # type: ignore[union-attr]
    assert any(kl > 0.0 for _, _, kl in candidates)  # type: ignore[union-attr]
    assert not stats.accepted
    assert stats.step_fraction == 0.0
    assert stats.backtracks == cfg.ls_max_steps
    for name, p in policy.get_params().items():
        assert torch.equal(p.detach(), theta_old[name]), name


def test_conjugate_gradient_residual_gives_the_quadratic_form_without_another_product():
    from metarl.trpo import conjugate_gradient_with_residual

    g = torch.Generator().manual_seed(5)
    q = torch.randn(30, 30, generator=g, dtype=torch.float64)
    a = q @ q.T + 0.1 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, generator=g, dtype=torch.float64)
    for iters in (3, 10):  # partly converged and (nearly) converged
        x, r = conjugate_gradient_with_residual(lambda v: a @ v, b, iters)
        assert torch.allclose(r, b - a @ x, rtol=1e-8, atol=1e-8)
        assert torch.allclose(x @ (b - r), x @ a @ x, rtol=1e-8)
