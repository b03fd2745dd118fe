"""Meta-gradient estimators (metarl/estimators.py) against the exact MAML gradient.

The statistical tests average MAML-TRPO's meta-gradient (the library's sampler, ``adapt``
and surrogate, via ``metarl.exact.sample_meta_gradients``) over B independent meta-batches
of fixed tasks and compare it with the exact gradient (``metarl.exact``). With ``SE_i`` the
standard error of component i of the average and ``z_i = (mean_i - exact_i) / SE_i``:

* unbiased: ``mean_i z_i^2 < 2`` (about 1 when unbiased; its 99.99% quantile for 55
  independent components is ~1.7) and ``max_i |z_i| < 4.5``;
* biased: ``mean_i z_i^2 > 36``, i.e. the error exceeds 6 standard errors on average.

An unbiased inner estimator still leaves an O(1/N) bias (the adapted parameters are a
nonlinear function of N sampled episodes), below the tolerance at N = 100. Seeds are fixed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metarl.adaptation import inner_loss, process_episodes
from metarl.config import TrainConfig
from metarl.episodes import Episodes
from metarl.errors import ConfigError
from metarl.estimators import ESTIMATORS, inner_objective
from metarl.exact import maml_objective_and_grad, sample_meta_gradients
from metarl.families import make_family
from metarl.learners import learner_settings
from metarl.learners.maml_trpo import TRPOSettings
from metarl.policies import CategoricalMLPPolicy
from metarl.task_api import seed_family

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
DT = torch.float64


def z_scores(grads: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    se = grads.std(0) / grads.shape[0] ** 0.5
    keep = se > 1e-12 * float(exact.norm())
    return (grads.mean(0) - exact)[keep] / se[keep]


def problem(family: str, fast_lr: float = 5.0, num_tasks: int = 4, seed: int = 1):
    env = make_family(family)
    seed_family(env, seed)
    tasks = env.unwrapped.sample_tasks(num_tasks)
    torch.manual_seed(seed)
    policy = CategoricalMLPPolicy(env.observation_space.shape[0], int(env.action_space.n), hidden_sizes=()).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    _, exact = maml_objective_and_grad(policy.get_params(), [t.model() for t in tasks], fast_lr, horizon=10)
    return tasks, policy, exact


# ---------------------------------------------------------------------------------------
# The objectives themselves.


def small_batch(t: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k, n, obs_dim, num_actions = 2, 3, 3, 4
    policy = CategoricalMLPPolicy(obs_dim, num_actions, hidden_sizes=()).double()
    mask = torch.ones(k, n, t, dtype=DT)
    if t > 1:
        mask[:, 1, t - 1 :] = 0  # a shorter episode
    episodes = Episodes(
        torch.randn(k, n, t, obs_dim, generator=g, dtype=DT),
        torch.randint(0, num_actions, (k, n, t), generator=g),
        torch.randn(k, n, t, generator=g, dtype=DT) * mask,
        mask,
    )
    params = {name: p.detach().clone().requires_grad_(True) for name, p in policy.get_params().items()}
    return policy, params, process_episodes(episodes, gamma=0.9, gae_lambda=1.0)


def grad_and_hessian(policy, params, batch, estimator):
    flat = torch.cat([p.reshape(-1) for p in params.values()]).detach().requires_grad_(True)

    def loss(x: torch.Tensor) -> torch.Tensor:
        w, b = x[: params["layers.0.weight"].numel()], x[params["layers.0.weight"].numel() :]
        p = {"layers.0.weight": w.view_as(params["layers.0.weight"]), "layers.0.bias": b}
        return inner_loss(policy, p, batch, estimator).sum()

    (grad,) = torch.autograd.grad(loss(flat), flat)
    return grad, torch.autograd.functional.hessian(loss, flat)


def test_estimators_share_the_gradient_and_differ_in_the_hessian() -> None:
    policy, params, batch = small_batch()
    results = {e: grad_and_hessian(policy, params, batch, e) for e in ESTIMATORS}
    g_plain, h_plain = results["plain"]
    for e in ("dice", "lvc"):
        torch.testing.assert_close(results[e][0], g_plain, rtol=1e-12, atol=1e-14)
        assert float((results[e][1] - h_plain).norm() / h_plain.norm()) > 0.05
        torch.testing.assert_close(results[e][1], results[e][1].T, rtol=1e-10, atol=1e-12)
    # dice adds the cross-time terms that lvc lacks, on episodes longer than one step.
    assert float((results["dice"][1] - results["lvc"][1]).norm() / h_plain.norm()) > 0.05


def test_dice_equals_lvc_on_single_step_episodes() -> None:
    """With T = 1 there are no earlier actions to credit: both Hessians add ``sum w A g g^T``."""
    policy, params, batch = small_batch(t=1)
    g_dice, h_dice = grad_and_hessian(policy, params, batch, "dice")
    g_lvc, h_lvc = grad_and_hessian(policy, params, batch, "lvc")
    _, h_plain = grad_and_hessian(policy, params, batch, "plain")
    torch.testing.assert_close(h_dice, h_lvc, rtol=1e-10, atol=1e-12)
    assert float((h_dice - h_plain).norm() / h_plain.norm()) > 0.05


def test_dice_hessian_matches_the_hand_formula() -> None:
    """``H_dice = H_plain + sum_t w_t A_t (g_t g_t^T + g_t u_{t-1}^T + u_{t-1} g_t^T)``, u = sum of earlier g."""
    policy, params, batch = small_batch()
    _, h_dice = grad_and_hessian(policy, params, batch, "dice")
    _, h_plain = grad_and_hessian(policy, params, batch, "plain")
    k, m = batch.weights.shape
    t = m // batch.episodes_per_task
    size = h_plain.shape[0]
    extra = torch.zeros(size, size, dtype=DT)
    for ki in range(k):
        for n in range(batch.episodes_per_task):
            u = torch.zeros(size, dtype=DT)
            for ti in range(t):
                idx = n * t + ti
                if batch.step_mask()[ki, idx] == 0:
                    continue
                obs = batch.obs[ki, idx : idx + 1]
                p = {name: v.detach().clone().requires_grad_(True) for name, v in params.items()}
                logp = policy.log_prob(policy.distribution(p, obs), batch.actions[ki, idx : idx + 1]).sum()
                g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(logp, list(p.values()))])
                c = batch.weights[ki, idx] * batch.advantages[ki, idx]
                extra += c * (torch.outer(g, g) + torch.outer(g, u) + torch.outer(u, g))
                u = u + g
    # The loss is -S, so the Hessians carry a minus sign.
    torch.testing.assert_close(h_dice, h_plain - extra, rtol=1e-9, atol=1e-12)


def test_inner_objective_rejects_bad_input() -> None:
    x = torch.zeros(2, 6)
    with pytest.raises(ValueError, match="Unknown estimator 'maml'"):
        inner_objective("maml", x, x, x, x, 2)
    with pytest.raises(ValueError, match="one shape"):
        inner_objective("dice", x, x[:, :4], x, x, 2)
    with pytest.raises(ValueError, match="split into 4 episodes"):
        inner_objective("dice", x, x, x, x, 4)


def test_estimator_is_validated_in_settings_and_config() -> None:
    assert TRPOSettings().estimator == "plain" and learner_settings(TrainConfig()).estimator == "plain"
    assert learner_settings(TrainConfig(learner="promp")).estimator == "lvc"  # ProMP's own
    assert learner_settings(TrainConfig(learner="promp", estimator="dice")).estimator == "dice"
    with pytest.raises(ValueError, match="estimator must be one of plain, dice, lvc"):
        TRPOSettings(estimator="DiCE")
    with pytest.raises(ConfigError, match="Did you mean 'dice'"):
        learner_settings(TrainConfig(estimator="dic").validate())
    assert learner_settings(TrainConfig(estimator="lvc").validate()).estimator == "lvc"


# ---------------------------------------------------------------------------------------
# The proof: averaged estimates against the exact meta-gradient.


def test_dice_is_unbiased_and_plain_is_biased_on_a_tabular_mdp() -> None:
    """4 tasks x 100 episodes x 300 batches, fast_lr 5 (measured: dice mean z^2 0.96, max |z| 2.9; plain 73)."""
    tasks, policy, exact = problem("TabularMDP")
    z = {
        e: z_scores(sample_meta_gradients("TabularMDP", tasks, policy, 5.0, e, 100, 300, seed=2), exact)
        for e in ("dice", "plain")
    }
    assert float((z["dice"] ** 2).mean()) < 2.0 and float(z["dice"].abs().max()) < 4.5, z["dice"]
    assert float((z["plain"] ** 2).mean()) > 36.0, z["plain"]


def test_lvc_and_dice_are_unbiased_on_bandits() -> None:
    """Past pulls do not change a bandit's future rewards, so LVC's dropped terms vanish in expectation.

    The gradient has 5 distinct entries (each appears twice), so an unbiased estimator's mean
    z^2 is a chi-square with 5 degrees of freedom over 5: above 3.0 by chance 1% of the time
    (above 2.0: 7.5%, too often for a test); a biased one's is far above 36.
    """
    tasks, policy, exact = problem("Bandit")
    for e in ("lvc", "dice"):
        z = z_scores(sample_meta_gradients("Bandit", tasks, policy, 5.0, e, 100, 200, seed=3), exact)
        assert float((z**2).mean()) < 3.0 and float(z.abs().max()) < 4.5, (e, z)
    z = z_scores(sample_meta_gradients("Bandit", tasks, policy, 5.0, "plain", 100, 200, seed=3), exact)
    assert float((z**2).mean()) > 36.0, z


@pytest.mark.slow
def test_lvc_is_biased_on_a_tabular_mdp_but_less_than_plain() -> None:
    """ProMP's caveat, measured: 2000 batches resolve LVC's bias (mean z^2 well above 2)."""
    tasks, policy, exact = problem("TabularMDP")
    lvc = sample_meta_gradients("TabularMDP", tasks, policy, 5.0, "lvc", 100, 2000, seed=4)
    plain = sample_meta_gradients("TabularMDP", tasks, policy, 5.0, "plain", 100, 2000, seed=4)
    assert float((z_scores(lvc, exact) ** 2).mean()) > 4.0
    assert float((lvc.mean(0) - exact).norm()) < 0.5 * float((plain.mean(0) - exact).norm())


def test_benchmark_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_estimators.py"),
        "--families",
        "Bandit",
        "--tasks",
        "2",
        "--episodes",
        "5",
        "--batches",
        "3",
        "--out",
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=120)
    (result,) = json.loads((tmp_path / "estimators.json").read_text())
    assert set(result["estimators"]) == set(ESTIMATORS)
    for s in result["estimators"].values():
        assert -1.0 <= s["cosine"] <= 1.0 and s["relative_error"] >= 0 and s["per_batch_variance"] > 0
    assert "| dice |" in (tmp_path / "estimators.md").read_text()
