"""The MAML math: inner gradients, second-order meta-gradients and the KL's Hessian-vector product.

Everything runs in float64 on a tiny Gaussian policy (2 -> 4 -> 2, tanh; 24 parameters)
and a fixed synthetic batch of K=3 tasks x N=4 episodes x T=5 steps with ragged episode
lengths, so derivatives can be checked against central finite differences.

Relative errors are ``|a - b| / |b|`` in the Euclidean norm over all parameters (a
per-component ratio would blow up on components that are zero up to rounding).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from metarl.adaptation import TaskBatch, adapt, inner_loss, inner_step, process_episodes
from metarl.episodes import Episodes
from metarl.learners.maml_trpo import kl_hvp_exact, kl_hvp_fast, surrogate_and_kl
from metarl.policies import GaussianMLPPolicy, detach_dist, detach_params, stack_params

K, N, T, OBS_DIM, ACT_DIM = 3, 4, 5, 2, 2
FAST_LR = 0.5  # large, so the second-order terms are far from negligible
EPS = 1e-6
DT = torch.float64


# ---------------------------------------------------------------------------------------
# Fixtures: a tiny policy and fixed synthetic batches.


def make_policy(seed: int = 0) -> GaussianMLPPolicy:
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(4,), activation="tanh", init_std=0.8).double()
    with torch.no_grad():  # non-zero biases and stds, so no parameter sits at a special point
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy


def make_episodes(seed: int) -> Episodes:
    """Random episodes; task k's episode n lasts ``lengths[k, n]`` steps (some padded)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (K, N), generator=g)
    lengths[:, 0] = T  # every task has one full-length episode
    mask = (torch.arange(T).view(1, 1, T) < lengths.unsqueeze(-1)).to(DT)
    obs = torch.randn(K, N, T, OBS_DIM, generator=g, dtype=DT)
    actions = torch.randn(K, N, T, ACT_DIM, generator=g, dtype=DT)
    rewards = torch.randn(K, N, T, generator=g, dtype=DT) * mask
    return Episodes(obs, actions, rewards, mask)


def make_batch(seed: int) -> TaskBatch:
    return process_episodes(make_episodes(seed), gamma=0.95, gae_lambda=0.9)


def leaf_params(policy: GaussianMLPPolicy) -> dict[str, torch.Tensor]:
    """The policy's parameters as fresh leaves (theta_0), independent of the module."""
    return {n: p.detach().clone().requires_grad_(True) for n, p in policy.get_params().items()}


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for name, t in like.items():
        out[name] = vector[i : i + t.numel()].view_as(t)
        i += t.numel()
    assert i == vector.numel()
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def central_diff_grad(f, x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Central finite differences of a scalar (or vector) function of a flat vector."""
    cols = []
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = eps
        cols.append((f(x + e) - f(x - e)) / (2 * eps))
    return torch.stack(cols, dim=-1)


def task_slice(batch: TaskBatch, k: int) -> TaskBatch:
    return TaskBatch(
        batch.obs[k : k + 1],
        batch.actions[k : k + 1],
        batch.advantages[k : k + 1],
        batch.weights[k : k + 1],
        batch.episodes_per_task,
    )


# ---------------------------------------------------------------------------------------
# A plain reference: one task at a time, shared parameters, torch.distributions.


def ref_task_logp(policy, params, obs, actions):
    mean, log_std = policy.distribution(params, obs)
    return Normal(mean, log_std.exp()).log_prob(actions).sum(-1)


def ref_adapt_task(policy, params, trains, k, fast_lr, create_graph=True):
    for batch in trains:
        loss = -(
            batch.weights[k] * ref_task_logp(policy, params, batch.obs[k], batch.actions[k]) * batch.advantages[k]
        ).sum()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {n: p - fast_lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def ref_surrogate_and_kl(policy, adapted_per_task, valid, old_per_task):
    losses, kls = [], []
    for k, params in enumerate(adapted_per_task):
        mean, log_std = policy.distribution(params, valid.obs[k])
        new, old = Normal(mean, log_std.exp()), Normal(*old_per_task[k])
        ratio = torch.exp(new.log_prob(valid.actions[k]).sum(-1) - old.log_prob(valid.actions[k]).sum(-1))
        losses.append(-(valid.weights[k] * ratio * valid.advantages[k]).sum())
        kls.append((valid.weights[k] * kl_divergence(old, new).sum(-1)).sum())
    return torch.stack(losses).mean(), torch.stack(kls).mean()


# ---------------------------------------------------------------------------------------
# Batches.


def test_process_episodes_layout_and_weights() -> None:
    episodes = make_episodes(0)
    batch = process_episodes(episodes, gamma=0.95, gae_lambda=0.9)
    assert batch.obs.shape == (K, N * T, OBS_DIM)
    assert batch.actions.shape == (K, N * T, ACT_DIM)
    assert batch.advantages.shape == batch.weights.shape == (K, N * T)
    assert batch.episodes_per_task == N
    mask = episodes.mask.reshape(K, N * T)
    # Every episode weighs 1/N, spread evenly over its own steps (pytorch-maml-rl's weighted_mean).
    lengths = episodes.mask.sum(-1, keepdim=True)
    assert (lengths.squeeze(-1) != T).any(), "the fixture must have episodes of different lengths"
    torch.testing.assert_close(batch.weights, (episodes.mask / lengths / N).reshape(K, N * T))
    torch.testing.assert_close(batch.weights.sum(-1), torch.ones(K, dtype=DT))
    assert torch.count_nonzero(batch.advantages[mask == 0]) == 0
    torch.testing.assert_close(batch.obs.reshape(K, N, T, OBS_DIM), episodes.observations)


@pytest.mark.parametrize("every", [2, 3, 5])
def test_subsample_keeps_every_sth_episode_and_renormalizes(every: int) -> None:
    episodes = make_episodes(1)
    batch = process_episodes(episodes, gamma=0.95, gae_lambda=0.9)
    sub = batch.subsample(every)
    kept = list(range(0, N, every))
    assert sub.episodes_per_task == len(kept)
    assert sub.obs.shape == (K, len(kept) * T, OBS_DIM)
    torch.testing.assert_close(sub.obs, episodes.observations[:, kept].reshape(K, -1, OBS_DIM), rtol=0, atol=0)
    torch.testing.assert_close(sub.actions, episodes.actions[:, kept].reshape(K, -1, ACT_DIM), rtol=0, atol=0)
    adv = batch.advantages.reshape(K, N, T)[:, kept].reshape(K, -1)
    torch.testing.assert_close(sub.advantages, adv, rtol=0, atol=0)
    kept_mask = episodes.mask[:, kept]
    torch.testing.assert_close(sub.weights.sum(-1), torch.ones(K, dtype=DT))
    torch.testing.assert_close(sub.weights, (kept_mask / kept_mask.sum(-1, keepdim=True) / len(kept)).reshape(K, -1))
    assert sub.weights.shape == (K, len(kept) * T)


def test_subsample_one_is_the_identity() -> None:
    batch = make_batch(1)
    sub = batch.subsample(1)
    for name in ("obs", "actions", "advantages", "weights"):
        assert torch.equal(getattr(sub, name), getattr(batch, name))
    assert sub.episodes_per_task == N


# ---------------------------------------------------------------------------------------
# Inner step.


def test_inner_loss_matches_reference() -> None:
    policy, batch = make_policy(), make_batch(0)
    params = leaf_params(policy)
    losses = inner_loss(policy, params, batch)
    assert losses.shape == (K,)
    for k in range(K):
        ref = -(
            batch.weights[k] * ref_task_logp(policy, params, batch.obs[k], batch.actions[k]) * batch.advantages[k]
        ).sum()
        torch.testing.assert_close(losses[k], ref, rtol=1e-12, atol=1e-12)
    # stacked parameters give the same per-task losses
    torch.testing.assert_close(inner_loss(policy, stack_params(params, K), batch), losses, rtol=1e-12, atol=1e-12)


def test_inner_step_gradient_matches_finite_differences() -> None:
    policy, batch = make_policy(), make_batch(0)
    params = leaf_params(policy)
    stacked = {n: p.detach().clone().requires_grad_(True) for n, p in stack_params(params, K).items()}
    adapted = inner_step(policy, stacked, batch, FAST_LR, create_graph=False)
    # theta'_k = theta - alpha * grad L_k  =>  grad L_k = (theta - theta'_k) / alpha, per task
    grad = torch.stack([flat([(stacked[n][k] - adapted[n][k]).detach() / FAST_LR for n in params]) for k in range(K)])
    theta0 = flat([p.detach() for p in params.values()])
    fd = central_diff_grad(lambda x: inner_loss(policy, unflat(x, params), batch).detach(), theta0)  # [K, P]
    for k in range(K):
        assert rel_err(grad[k], fd[k]) < 1e-3, k
    # the tasks really have different gradients (the per-task split is being exercised)
    assert rel_err(grad[0], grad[1]) > 0.1


def test_inner_step_with_graph_keeps_second_order_terms() -> None:
    policy, batch = make_policy(), make_batch(0)
    stacked = {n: p.detach().clone().requires_grad_(True) for n, p in stack_params(leaf_params(policy), K).items()}
    with_graph = inner_step(policy, stacked, batch, FAST_LR, create_graph=True)
    without = inner_step(policy, stacked, batch, FAST_LR, create_graph=False)
    for n in stacked:
        torch.testing.assert_close(with_graph[n], without[n], rtol=0, atol=0)
    # with the graph, d theta' / d theta = I - alpha * H is not the identity (second-order terms are there)
    w = "layers.0.weight"
    g_with = torch.autograd.grad(with_graph[w].sum(), stacked[w])[0]
    assert not torch.allclose(g_with, torch.ones_like(g_with))


# ---------------------------------------------------------------------------------------
# The meta-objective and its gradient.


def meta_problem(num_steps: int):
    policy = make_policy()
    trains = [make_batch(10 + i) for i in range(num_steps)]
    valid = make_batch(20)
    params = leaf_params(policy)
    adapted0 = adapt(policy, params, trains, FAST_LR, first_order=False, create_graph=False)
    old_dist = detach_dist(policy.distribution(adapted0, valid.obs))
    return policy, params, trains, valid, old_dist


def meta_loss(policy, params, trains, valid, old_dist, first_order=False):
    adapted = adapt(policy, params, trains, FAST_LR, first_order=first_order)
    loss, _ = surrogate_and_kl(policy, adapted, valid, old_dist)
    return loss


@pytest.mark.parametrize("num_steps", [1, 2])
def test_adapt_and_surrogate_match_per_task_reference(num_steps: int) -> None:
    policy, params, trains, valid, old_dist = meta_problem(num_steps)
    adapted = adapt(policy, params, trains, FAST_LR, first_order=False)
    per_task = [ref_adapt_task(policy, params, trains, k, FAST_LR) for k in range(K)]
    for k in range(K):
        for n in params:
            torch.testing.assert_close(adapted[n][k], per_task[k][n], rtol=1e-10, atol=1e-12)
    # evaluate at a point away from theta_0 so the ratio is not 1 and the KL not 0
    shifted = {
        n: p + 0.05 * torch.randn(p.shape, dtype=DT, generator=torch.Generator().manual_seed(3))
        for n, p in params.items()
    }
    adapted = adapt(policy, shifted, trains, FAST_LR, first_order=False)
    loss, kl = surrogate_and_kl(policy, adapted, valid, old_dist)
    old_per_task = [(old_dist[0][k], old_dist[1][k].exp()) for k in range(K)]
    ref_loss, ref_kl = ref_surrogate_and_kl(
        policy, [ref_adapt_task(policy, shifted, trains, k, FAST_LR) for k in range(K)], valid, old_per_task
    )
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(kl, ref_kl, rtol=1e-10, atol=1e-12)
    assert float(kl.detach()) > 1e-4


def test_surrogate_at_theta0_is_minus_mean_advantage_and_kl_is_zero() -> None:
    policy, params, trains, valid, old_dist = meta_problem(1)
    loss, kl = surrogate_and_kl(policy, adapt(policy, params, trains, FAST_LR), valid, old_dist)
    torch.testing.assert_close(loss, -(valid.weights * valid.advantages).sum(-1).mean(), rtol=1e-12, atol=1e-12)
    assert abs(float(kl.detach())) < 1e-14


@pytest.mark.parametrize("num_steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(num_steps: int) -> None:
    policy, params, trains, valid, old_dist = meta_problem(num_steps)
    grad = flat(torch.autograd.grad(meta_loss(policy, params, trains, valid, old_dist), list(params.values())))
    theta0 = flat([p.detach() for p in params.values()])

    def f(x: torch.Tensor) -> torch.Tensor:
        leaves = {n: p.clone().requires_grad_(True) for n, p in unflat(x, params).items()}
        return meta_loss(policy, leaves, trains, valid, old_dist).detach()

    fd = central_diff_grad(f, theta0)
    assert rel_err(grad, fd) < 1e-3
    # the first-order gradient is measurably wrong here, so this check has teeth
    fo = flat(
        torch.autograd.grad(meta_loss(policy, params, trains, valid, old_dist, first_order=True), list(params.values()))
    )
    assert rel_err(fo, fd) > 1e-2


@pytest.mark.parametrize("num_steps", [1, 2])
def test_first_order_meta_gradient_is_the_adapted_gradient_summed_over_tasks(num_steps: int) -> None:
    policy, params, trains, valid, old_dist = meta_problem(num_steps)
    fo = flat(
        torch.autograd.grad(meta_loss(policy, params, trains, valid, old_dist, first_order=True), list(params.values()))
    )
    # FOMAML: sum_k grad_{theta'} L(theta')|_{theta' = theta'_k} (L being the mean over tasks, each term has 1/K)
    adapted = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in adapt(policy, params, trains, FAST_LR, create_graph=False).items()
    }
    loss, _ = surrogate_and_kl(policy, adapted, valid, old_dist)
    per_task = torch.autograd.grad(loss, list(adapted.values()))
    expected = flat([g.sum(0) for g in per_task])
    assert rel_err(fo, expected) < 1e-10
    so = flat(torch.autograd.grad(meta_loss(policy, params, trains, valid, old_dist), list(params.values())))
    assert rel_err(fo, so) > 1e-2
    # first-order MAML adapts to the same parameters, only the gradient differs
    adapted_fo = adapt(policy, params, trains, FAST_LR, first_order=True)
    for n in params:
        torch.testing.assert_close(adapted_fo[n], adapted[n], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("first_order", [False, True])
def test_adapt_continues_from_stacked_parameters(first_order: bool) -> None:
    """Adapting in two calls (the second from ``stacked=``) is the same function as one call."""
    policy, params, trains, valid, old_dist = meta_problem(2)
    whole = adapt(policy, params, trains, FAST_LR, first_order=first_order)
    first = adapt(policy, params, trains[:1], FAST_LR, first_order=first_order)
    chained = adapt(policy, params, trains[1:], FAST_LR, first_order=first_order, stacked=first)
    for n in params:
        torch.testing.assert_close(chained[n], whole[n], rtol=1e-12, atol=1e-14)
    grad_whole = torch.autograd.grad(surrogate_and_kl(policy, whole, valid, old_dist)[0], list(params.values()))
    grad_chained = torch.autograd.grad(surrogate_and_kl(policy, chained, valid, old_dist)[0], list(params.values()))
    assert rel_err(flat(grad_chained), flat(grad_whole)) < 1e-10


def test_adapt_without_graph_returns_detached_parameters() -> None:
    policy, params, trains, _, _ = meta_problem(2)
    detached = adapt(policy, params, trains, FAST_LR, create_graph=False)
    attached = adapt(policy, params, trains, FAST_LR)
    for n in params:
        assert not detached[n].requires_grad
        assert attached[n].requires_grad
        assert detached[n].shape == (K, *params[n].shape)
        torch.testing.assert_close(detached[n], attached[n].detach(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------
# Hessian-vector products of the KL.


def random_vectors(num: int, size: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, dtype=DT, generator=g) for _ in range(num)]


@pytest.mark.parametrize("estimator", ["plain", "dice", "lvc"])
@pytest.mark.parametrize("num_steps,first_order", [(1, False), (2, False), (1, True), (2, True)])
def test_fast_hvp_equals_exact_third_order_hvp(num_steps: int, first_order: bool, estimator: str) -> None:
    policy, params, trains, valid, _ = meta_problem(num_steps)
    fast = kl_hvp_fast(
        policy, params, trains, valid, FAST_LR, first_order, damping=0.0, subsample=1, estimator=estimator
    )
    exact = kl_hvp_exact(
        policy, params, trains, valid, FAST_LR, first_order, damping=0.0, subsample=1, estimator=estimator
    )
    size = sum(p.numel() for p in params.values())
    for v in random_vectors(3, size, seed=num_steps):
        hv_exact = exact(v)
        assert hv_exact.shape == (size,)
        assert float(hv_exact.norm()) > 1e-3
        assert rel_err(fast(v), hv_exact) < 1e-6


def test_first_and_second_order_hvps_differ() -> None:
    policy, params, trains, valid, _ = meta_problem(1)
    (v,) = random_vectors(1, sum(p.numel() for p in params.values()), seed=5)
    so = kl_hvp_exact(policy, params, trains, valid, FAST_LR, False, damping=0.0)(v)
    fo = kl_hvp_exact(policy, params, trains, valid, FAST_LR, True, damping=0.0)(v)
    assert rel_err(fo, so) > 1e-2


@pytest.mark.parametrize("make_hvp", [kl_hvp_fast, kl_hvp_exact])
def test_hvp_damping_adds_damping_times_v(make_hvp) -> None:
    policy, params, trains, valid, _ = meta_problem(1)
    (v,) = random_vectors(1, sum(p.numel() for p in params.values()), seed=6)
    plain = make_hvp(policy, params, trains, valid, FAST_LR, False, damping=0.0)(v)
    damped = make_hvp(policy, params, trains, valid, FAST_LR, False, damping=0.25)(v)
    torch.testing.assert_close(damped - plain, 0.25 * v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_fast_hvp_is_symmetric_and_positive_semidefinite(num_steps: int) -> None:
    policy, params, trains, valid, _ = meta_problem(num_steps)
    hvp = kl_hvp_fast(policy, params, trains, valid, FAST_LR, False, damping=0.0)
    v, w = random_vectors(2, sum(p.numel() for p in params.values()), seed=7)
    hv, hw = hvp(v), hvp(w)
    vhw, whv = torch.dot(v, hw), torch.dot(w, hv)
    assert abs(float(vhw - whv)) <= 1e-10 * float(hv.norm() * w.norm())
    assert float(torch.dot(v, hv)) > 0 and float(torch.dot(w, hw)) > 0


@pytest.mark.parametrize("num_steps", [1, 2])
def test_exact_hvp_matches_finite_differences_of_kl_gradient(num_steps: int) -> None:
    policy, params, trains, valid, old_dist = meta_problem(num_steps)
    exact = kl_hvp_exact(policy, params, trains, valid, FAST_LR, False, damping=0.0)
    theta0 = flat([p.detach() for p in params.values()])

    def kl_grad(x: torch.Tensor) -> torch.Tensor:
        leaves = {n: p.clone().requires_grad_(True) for n, p in unflat(x, params).items()}
        _, kl = surrogate_and_kl(policy, adapt(policy, leaves, trains, FAST_LR), valid, old_dist)
        return flat(torch.autograd.grad(kl, list(leaves.values())))

    assert float(kl_grad(theta0).norm()) < 1e-12  # the KL is minimal (zero) at theta_0
    eps = 1e-5
    for v in random_vectors(2, theta0.numel(), seed=8):
        fd = (kl_grad(theta0 + eps * v) - kl_grad(theta0 - eps * v)) / (2 * eps)
        assert rel_err(exact(v), fd) < 1e-6


def explicit_kl_hessian(policy, params, trains, valid, fast_lr, subsample):
    """``mean_k J_k^T F_k J_k`` from dense matrices, the formula of ``kl_hvp_fast``.

    The adaptation path uses all the data; the inner-loss Hessians and the Fisher use
    every ``subsample``-th episode (the documented meaning of ``curvature_subsample``).
    """
    theta0 = flat([p.detach() for p in params.values()])
    size = theta0.numel()
    total = torch.zeros(size, size, dtype=DT)
    for k in range(K):
        point = theta0
        jac = torch.eye(size, dtype=DT)
        for batch in trains:
            sub_k = task_slice(batch.subsample(subsample), k)
            hess = torch.autograd.functional.hessian(
                lambda x, sub_k=sub_k: inner_loss(policy, unflat(x, params), sub_k)[0], point
            )
            jac = (torch.eye(size, dtype=DT) - fast_lr * hess) @ jac
            full_k = task_slice(batch, k)
            x = point.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(inner_loss(policy, unflat(x, params), full_k)[0], x)
            point = point - fast_lr * g
        valid_k = task_slice(valid.subsample(subsample), k)
        old = detach_dist(policy.distribution(unflat(point, params), valid_k.obs))

        def kl_k(x: torch.Tensor, valid_k: TaskBatch = valid_k, old: tuple[torch.Tensor, ...] = old) -> torch.Tensor:
            return (valid_k.weights * policy.kl(old, policy.distribution(unflat(x, params), valid_k.obs))).sum()

        fisher = torch.autograd.functional.hessian(kl_k, point)
        total += jac.T @ fisher @ jac
    return total / K


@pytest.mark.parametrize("subsample", [1, 2])
def test_fast_hvp_matches_dense_formula(subsample: int) -> None:
    policy, params, trains, valid, _ = meta_problem(2)
    dense = explicit_kl_hessian(policy, params, trains, valid, FAST_LR, subsample)
    torch.testing.assert_close(dense, dense.T, rtol=1e-10, atol=1e-12)
    hvp = kl_hvp_fast(policy, params, trains, valid, FAST_LR, False, damping=0.0, subsample=subsample)
    vectors = random_vectors(2, dense.shape[0], seed=9)
    for v in vectors:
        assert rel_err(hvp(v), dense @ v) < 1e-6
    if subsample == 1:  # checks the reference itself: with all the data it is the exact Hessian of the KL
        exact = kl_hvp_exact(policy, params, trains, valid, FAST_LR, False, damping=0.0)
        assert rel_err(dense @ vectors[0], exact(vectors[0])) < 1e-6
    else:  # and subsampling the curvature really changes it
        full = explicit_kl_hessian(policy, params, trains, valid, FAST_LR, 1)
        assert rel_err(dense @ vectors[0], full @ vectors[0]) > 1e-2


def test_hvp_does_not_touch_the_policy_parameters() -> None:
    policy, params, trains, valid, _ = meta_problem(1)
    before = [p.detach().clone() for p in policy.parameters()]
    (v,) = random_vectors(1, sum(p.numel() for p in params.values()), seed=11)
    kl_hvp_fast(policy, policy.get_params(), trains, valid, FAST_LR, False, damping=0.0)(v)
    for p, b in zip(policy.parameters(), before):
        assert torch.equal(p.detach(), b)


def test_detach_params_cuts_the_graph() -> None:
    params = leaf_params(make_policy())
    doubled = {n: 2 * p for n, p in params.items()}
    detached = detach_params(doubled)
    for n in params:
        assert not detached[n].requires_grad
        torch.testing.assert_close(detached[n], 2 * params[n].detach())


def test_subsample_coarser_than_the_batch_keeps_the_first_episode() -> None:
    batch = process_episodes(make_episodes(1), gamma=0.95, gae_lambda=0.9)
    sub = batch.subsample(N + 3)
    assert sub.episodes_per_task == 1
    torch.testing.assert_close(sub.obs, batch.obs.reshape(K, N, T, OBS_DIM)[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(sub.weights.sum(-1), torch.ones(K, dtype=DT))
