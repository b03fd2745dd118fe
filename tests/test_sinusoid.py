"""Sinusoid regression with MAML (examples/sinusoid.py, importable as ``sinusoid``: tests/conftest.py)
and its benchmark script."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sinusoid import (
    SinusoidConfig,
    adapt,
    eval_generator,
    evaluate,
    fine_tune,
    make_regressor,
    maml_loss,
    mean_ci,
    predict,
    sample_batch,
    sinusoid,
    task_mse,
    train_generator,
    train_maml,
    train_pretrained,
)

from metarl.policies import stack_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- task sampler -------------------------------------------------------------------------


def test_sampler_is_deterministic_under_a_seed_and_differs_across_seeds():
    cfg = SinusoidConfig()
    a = sample_batch(25, 10, 10, torch.Generator().manual_seed(3), cfg)
    b = sample_batch(25, 10, 10, torch.Generator().manual_seed(3), cfg)
    c = sample_batch(25, 10, 10, torch.Generator().manual_seed(4), cfg)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.amplitude, c.amplitude)
    assert not torch.equal(a.x_support, c.x_support)
    # Training and held-out tasks come from different seeds.
    assert not torch.equal(
        sample_batch(5, 10, 10, train_generator(cfg), cfg).amplitude,
        sample_batch(5, 10, 10, eval_generator(cfg), cfg).amplitude,
    )


def test_sampler_respects_ranges_shapes_and_the_sine():
    cfg = SinusoidConfig()
    batch = sample_batch(4000, 5, 7, torch.Generator().manual_seed(0), cfg)
    assert batch.x_support.shape == (4000, 5, 1) and batch.y_support.shape == (4000, 5, 1)
    assert batch.x_query.shape == (4000, 7, 1) and batch.y_query.shape == (4000, 7, 1)
    assert batch.amplitude.shape == (4000,) and batch.phase.shape == (4000,)
    assert 0.1 <= batch.amplitude.min() and batch.amplitude.max() <= 5.0
    assert 0.0 <= batch.phase.min() and batch.phase.max() <= math.pi
    assert -5.0 <= batch.x_support.min() and batch.x_support.max() <= 5.0
    # The draws fill their ranges (uniform): not, e.g., a constant or a narrower interval.
    assert batch.amplitude.min() < 0.2 and batch.amplitude.max() > 4.9
    assert batch.phase.min() < 0.05 and batch.phase.max() > math.pi - 0.05
    assert abs(float(batch.amplitude.mean()) - 2.55) < 0.1
    assert abs(float(batch.x_query.mean())) < 0.1
    k, m = 17, 3
    expected = batch.amplitude[k] * torch.sin(batch.x_query[k, m, 0] - batch.phase[k])
    assert torch.allclose(batch.y_query[k, m, 0], expected)
    assert torch.allclose(
        torch.abs(batch.y_support), torch.abs(batch.y_support).clamp(max=batch.amplitude[:, None, None])
    )


def test_query_grid_is_an_even_grid_over_the_input_range():
    cfg = SinusoidConfig()
    batch = sample_batch(3, 10, 100, torch.Generator().manual_seed(0), cfg, query_grid=True)
    assert torch.allclose(batch.x_query[2, :, 0], torch.linspace(-5.0, 5.0, 100))
    assert torch.equal(batch.x_query[0], batch.x_query[1])


def test_sinusoid_and_task_mse_check_shapes():
    with pytest.raises(ValueError, match=r"x \[K, M, 1\], amplitude \[K\]"):
        sinusoid(torch.zeros(2, 3, 1), torch.ones(3), torch.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        task_mse(torch.zeros(2, 3, 1), torch.zeros(2, 4, 1))
    assert torch.allclose(
        task_mse(torch.ones(2, 4, 1), torch.tensor([0.0, 3.0]).reshape(2, 1, 1).expand(2, 4, 1)),
        torch.tensor([1.0, 4.0]),
    )


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shots": 0}, r"shots must be an integer >= 1, got 0"),
        ({"meta_batch_size": -2}, r"meta_batch_size must be an integer >= 1"),
        ({"inner_lr": 0.0}, r"inner_lr must be a finite number > 0, got 0.0"),
        ({"outer_lr": -1e-3}, r"outer_lr must be a finite number > 0"),
        ({"inner_lr": float("nan")}, r"inner_lr must be a finite number > 0"),
        ({"iterations": -1}, r"iterations must be an integer >= 0"),
        ({"eval_tasks": 1}, r"eval_tasks must be an integer >= 2"),
        ({"hidden_sizes": ()}, r"hidden_sizes must be a non-empty list"),
        ({"amplitude_range": (5.0, 0.1)}, r"amplitude_range must be \(low, high\) with finite low < high"),
        ({"seed": 7, "eval_seed": 7}, r"eval_seed must differ from seed"),
        ({"dtype": "float16"}, r"dtype must be 'float32' or 'float64'"),
    ],
)
def test_bad_config_values_raise_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SinusoidConfig(**kwargs)


def test_default_config_is_finn_et_al():
    cfg = SinusoidConfig()
    assert (cfg.meta_batch_size, cfg.shots, cfg.inner_lr, cfg.outer_lr, cfg.hidden_sizes) == (
        25,
        10,
        0.01,
        1e-3,
        (40, 40),
    )
    assert (cfg.amplitude_range, cfg.phase_range, cfg.input_range) == ((0.1, 5.0), (0.0, math.pi), (-5.0, 5.0))
    assert json.loads(json.dumps(cfg.to_dict()))["shots"] == 10


# --- adaptation and the meta-gradient ------------------------------------------------------


def test_adapt_matches_the_closed_form_step_of_a_linear_model_per_task():
    """Linear model y = w x + b: grad_w MSE = 2 mean((w x + b - y) x), grad_b = 2 mean(w x + b - y)."""
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(2, 5, 1, generator=g, dtype=torch.float64),
        torch.randn(2, 5, 1, generator=g, dtype=torch.float64),
    )
    w = torch.tensor([[[0.5]], [[-1.5]]], dtype=torch.float64, requires_grad=True)  # [K, out, in]
    b = torch.tensor([[0.2], [1.0]], dtype=torch.float64, requires_grad=True)  # [K, out]
    lr = 0.3
    new = adapt({"layers.0.weight": w, "layers.0.bias": b}, x, y, num_layers=1, lr=lr, steps=1, create_graph=False)
    for k in range(2):
        r = w[k, 0, 0] * x[k, :, 0] + b[k, 0] - y[k, :, 0]
        assert torch.allclose(new["layers.0.weight"][k, 0, 0], w[k, 0, 0] - lr * 2 * (r * x[k, :, 0]).mean())
        assert torch.allclose(new["layers.0.bias"][k, 0], b[k, 0] - lr * 2 * r.mean())


def test_one_stacked_step_equals_each_task_adapted_alone():
    cfg = SinusoidConfig(hidden_sizes=(8, 8), dtype="float64")
    reg = make_regressor(cfg)
    batch = sample_batch(3, 10, 10, torch.Generator().manual_seed(1), cfg)
    together = adapt(
        stack_params(reg.get_params(), 3), batch.x_support, batch.y_support, reg.num_layers, 0.05, 2, create_graph=False
    )
    for k in range(3):
        alone = adapt(
            stack_params(reg.get_params(), 1),
            batch.x_support[k : k + 1],
            batch.y_support[k : k + 1],
            reg.num_layers,
            0.05,
            2,
            create_graph=False,
        )
        for name in together:
            assert torch.allclose(together[name][k], alone[name][0], atol=1e-12)
    with pytest.raises(ValueError, match=r"stacked per task \[K, \.\.\.\]"):
        adapt(reg.get_params(), batch.x_support, batch.y_support, reg.num_layers, 0.05, 1, create_graph=False)


def _tiny_maml_setup(inner_steps: int = 1):
    cfg = SinusoidConfig(hidden_sizes=(6,), dtype="float64")
    reg = make_regressor(cfg)
    with torch.no_grad():  # non-zero biases: kinks of the ReLU away from x = 0
        for p in reg.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(5), dtype=p.dtype))
    batch = sample_batch(3, 4, 5, torch.Generator().manual_seed(2), cfg)
    names = list(reg.get_params())
    flat0 = torch.cat([p.detach().flatten() for p in reg.parameters()])
    shapes = [p.shape for p in reg.parameters()]

    def loss(flat: torch.Tensor, first_order: bool = False) -> torch.Tensor:
        chunks = torch.split(flat, [s.numel() for s in shapes])
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        return maml_loss(params, batch, reg.num_layers, inner_lr=0.05, inner_steps=inner_steps, first_order=first_order)

    return flat0, loss


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_maml_meta_gradient_matches_finite_differences_in_float64(inner_steps):
    flat0, loss = _tiny_maml_setup(inner_steps)
    flat = flat0.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(flat), flat)
    eps = 1e-6
    numeric = torch.empty_like(flat0)
    with torch.enable_grad():  # the loss takes inner gradients even when evaluated for FD
        for i in range(flat0.numel()):
            e = torch.zeros_like(flat0)
            e[i] = eps
            plus, minus = (flat0 + e).requires_grad_(), (flat0 - e).requires_grad_()
            numeric[i] = (loss(plus).detach() - loss(minus).detach()) / (2 * eps)
    assert torch.allclose(grad, numeric, rtol=1e-6, atol=1e-8), (grad - numeric).abs().max()
    # The second-order terms matter: first-order MAML's gradient is measurably different.
    fo_flat = flat0.clone().requires_grad_()
    (fo,) = torch.autograd.grad(loss(fo_flat, first_order=True), fo_flat)
    assert (fo - numeric).norm() > 0.1 * numeric.norm()


# --- training and evaluation ---------------------------------------------------------------


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    cfg = SinusoidConfig(iterations=5, hidden_sizes=(8,))
    state = torch.random.get_rng_state()
    a, b = train_maml(cfg), train_maml(cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.losses == b.losses
    for p, q in zip(a.regressor.parameters(), b.regressor.parameters()):
        assert torch.equal(p, q)
    # Same initialization and tasks for both methods.
    assert torch.equal(make_regressor(cfg).layers[0].weight, make_regressor(cfg).layers[0].weight)


def test_fine_tune_returns_every_step_and_lowers_the_support_loss():
    cfg = SinusoidConfig(hidden_sizes=(16, 16))
    reg = make_regressor(cfg)
    batch = sample_batch(8, 10, 10, torch.Generator().manual_seed(0), cfg)
    path = fine_tune(reg.get_params(), batch.x_support, batch.y_support, reg.num_layers, 0.01, 3)
    assert len(path) == 4 and path[0]["layers.0.weight"].shape == (8, 16, 1)
    assert all(not p.requires_grad for step in path for p in step.values())
    support = [float(task_mse(predict(step, batch.x_support, reg.num_layers), batch.y_support).sum()) for step in path]
    assert support[3] < support[1] < support[0]
    mse = evaluate(reg, batch, 0.01, 3)
    assert mse.shape == (4, 8)


def test_mean_ci_matches_a_hand_computed_interval():
    mean, half = mean_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5)
    assert half == pytest.approx(1.96 * math.sqrt(5.0 / 3.0) / 2.0)
    with pytest.raises(ValueError, match="at least 2 values"):
        mean_ci(torch.tensor([1.0]))


def test_short_maml_training_beats_the_pretrained_baseline_after_one_step():
    cfg = SinusoidConfig(iterations=1500, eval_tasks=200, seed=0)
    maml, pretrained = train_maml(cfg), train_pretrained(cfg)
    batch = sample_batch(cfg.eval_tasks, cfg.shots, cfg.eval_points, eval_generator(cfg), cfg, query_grid=True)
    m = evaluate(maml.regressor, batch, cfg.inner_lr, 1)
    p = evaluate(pretrained.regressor, batch, cfg.inner_lr, 1)
    maml_1, pre_1 = mean_ci(m[1]), mean_ci(p[1])
    assert maml_1[0] < 0.6 * pre_1[0], (maml_1, pre_1)  # measured: 0.76 +- 0.11 vs 1.94 +- 0.26
    assert maml_1[0] + maml_1[1] < pre_1[0] - pre_1[1]  # the 95% intervals do not overlap
    assert maml_1[0] < float(m[0].mean()) - 0.3  # MAML's one step helps; it is the point of the initialization


# --- benchmark script ----------------------------------------------------------------------


def test_benchmark_script_writes_json_and_markdown(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_sinusoid.py",
            "--iterations",
            "20",
            "--eval-tasks",
            "10",
            "--log-every",
            "0",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "sinusoid.json").read_text())
    assert result["config"]["iterations"] == 20 and result["config"]["eval_tasks"] == 10
    for method in ("maml", "pretrained"):
        m = result["methods"][method]
        assert set(m["mse"]) == {"0", "1", "10"}
        assert len(m["curve_mean"]) == 11
        assert all(v["mean"] > 0 and v["ci95"] > 0 for v in m["mse"].values())
    md = (tmp_path / "sinusoid.md").read_text()
    assert "| maml |" in md and "| pretrained |" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "sinusoid.png").exists()
    else:
        assert (tmp_path / "sinusoid.png").read_bytes()[:4] == b"\x89PNG"


def test_benchmark_script_rejects_bad_shots(tmp_path):
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_sinusoid.py", "--shots", "0", "--out", str(tmp_path)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "shots must be an integer >= 1" in out.stderr
    assert not (tmp_path / "sinusoid.json").exists()
