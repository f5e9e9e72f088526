"""The lessons' claims, computed with the library directly (the notebooks themselves run top to bottom
in test_notebooks.py; here each claim a lesson states in words is checked in numbers, fast).

02 why symplectic: the period at 2 rad is 2.67 s (not "900 swings" in 2000 s); leapfrog's energy band
   scales as dt², its modified energy's as dt⁴, Yoshida4's as dt⁴ and Yoshida4 is 4th order; leapfrog's
   phase error grows linearly while its energy stays bounded and RK4's drifts; the splitting is
   symplectic without friction or residual and not with them; a learned model conserves its *own*
   modified energy, not the true one.
03 learn a pendulum: the training loss is the multi-step rollout through the model's integrator.
05 pixels to phase space: the pixel pendulum has no friction, input map or residual (as the text says);
   its frames beat the mean frame; its period follows the elliptic integral across amplitudes.
08 what the model learned: the pretrained models' V, U, masses, friction, input map and couplings
   within stated tolerances of the truth; the pixel model's energy is the true one times one scale;
   a chain allowed every pair finds its neighbour graph.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hwm_studio import PhaseState, get_integrator, get_system, rollout
from hwm_studio.physics import flatten_time
from hwm_studio.pretrained import RECIPES, eval_data, pixel_assets, run_dir, training_data
from hwm_studio.training.checkpoint import load_model, read_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PENDULUM = get_system("pendulum")
M, L, G = (PENDULUM.params[k] for k in ("m", "l", "g"))


def _period(q0: float, l: float = L, g: float = G) -> float:
    """T = 4 K(sin(q0/2)) sqrt(l/g), K by the arithmetic-geometric mean (as lessons 02 and 05)."""
    a, b = 1.0, math.sqrt(1 - math.sin(q0 / 2) ** 2)
    while abs(a - b) > 1e-15 * a:
        a, b = 0.5 * (a + b), math.sqrt(a * b)
    return 4 * math.sqrt(l / g) * math.pi / (2 * a)


def _start(q0: float) -> PhaseState:
    return PhaseState(torch.full((1, 1, 1), q0, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64))


@functools.cache
def _run(name: str, dt: float, steps: int, q0: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, p and H - H0 along the exact pendulum's rollout (cached: several tests read the same runs)."""
    traj = rollout(PENDULUM.field(), get_integrator(name), _start(q0), dt=dt, steps=steps, record_energy=False)
    h = PENDULUM.energy(flatten_time(traj.q, traj.p)).numpy()
    return traj.q[0, :, 0, 0].numpy(), traj.p[0, :, 0, 0].numpy(), h - h[0]


def _upward_crossings(q: np.ndarray, dt: float) -> np.ndarray:
    i = np.nonzero((q[:-1] < 0) & (q[1:] >= 0) & (np.abs(np.diff(q)) < np.pi))[0]
    return dt * (i - q[i] / (q[i + 1] - q[i]))


def _modified_energy(q: np.ndarray, p: np.ndarray, h: float) -> np.ndarray:
    """Leapfrog's modified Hamiltonian to O(h²) for the pendulum: H + h²/12 T'² V'' - h²/24 T'' V'²."""
    a = 1 / (M * L * L)
    return (0.5 * a * p**2 + M * G * L * (1 - np.cos(q))
            + h * h * ((a * p) ** 2 * M * G * L * np.cos(q) / 12 - a * (M * G * L * np.sin(q)) ** 2 / 24))  # fmt: skip


def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# --- 02 why symplectic -------------------------------------------------------------------------------
def test_the_period_at_two_radians_is_2_67_s_so_2000_s_are_750_periods() -> None:
    scipy_special = pytest.importorskip("scipy.special")
    period = _period(2.0)
    assert period == pytest.approx(2.6659, abs=1e-4)
    assert period == pytest.approx(4 * math.sqrt(L / G) * scipy_special.ellipk(math.sin(1.0) ** 2), rel=1e-12)
    q, _, _ = _run("yoshida4", 0.01, 2000)
    assert np.diff(_upward_crossings(q, 0.01)).mean() == pytest.approx(period, abs=1e-3)  # measured
    assert 20_000 * 0.1 / period == pytest.approx(750, abs=1)  # the lesson's 20,000 steps of 0.1 s


def test_leapfrog_energy_band_scales_as_dt_squared_and_its_modified_energy_as_dt_to_the_fourth() -> None:
    dts = np.array([0.2, 0.1, 0.05, 0.025])
    band, modified, yoshida = [], [], []
    for dt in dts:
        q, p, dh = _run("leapfrog", float(dt), round(20 / dt))
        band.append(np.ptp(dh))
        modified.append(np.ptp(_modified_energy(q, p, float(dt))))
        yoshida.append(np.ptp(_run("yoshida4", float(dt), round(20 / dt))[2]))
    assert _slope(dts, band) == pytest.approx(2.0, abs=0.1)
    assert _slope(dts, modified) == pytest.approx(4.0, abs=0.2)
    assert _slope(dts, yoshida) == pytest.approx(4.0, abs=0.3)
    assert all(m < b / 10 for m, b in zip(modified, band, strict=True))  # H~ is far flatter than H


def test_yoshida4_is_fourth_order_and_leapfrog_second_on_the_lessons_pendulum() -> None:
    q_ref, p_ref, _ = _run("yoshida4", 0.0005, 4000)  # to t = 2 s
    dts = [0.1, 0.05, 0.025]
    for name, order in (("yoshida4", 4), ("leapfrog", 2)):
        errors = []
        for dt in dts:
            q, p, _ = _run(name, dt, round(2.0 / dt))
            errors.append(math.hypot(q[-1] - q_ref[-1], p[-1] - p_ref[-1]))
        assert _slope(dts, errors) == pytest.approx(order, abs=0.3), name


def test_leapfrog_phase_error_grows_linearly_while_its_energy_stays_bounded_and_rk4s_drifts() -> None:
    dt, steps = 0.1, 3000  # 300 s, over 110 periods
    period = _period(2.0)
    q, _, dh = _run("leapfrog", dt, steps)
    times = _upward_crossings(q, dt)
    lag = times - (0.75 * period + period * np.arange(len(times)))
    quadratic, linear, _ = np.polyfit(times, lag, 2)
    t_end = times[-1]
    assert abs(lag[-1]) > 100 * abs(lag[0])  # it grows ...
    assert abs(quadratic) * t_end**2 < 1e-3 * abs(linear) * t_end  # ... on a straight line
    assert abs(linear) == pytest.approx(2.0e-3, rel=0.05)  # the lesson's rate at dt = 0.1
    first, rest = np.abs(dh[: steps // 10]).max(), np.abs(dh[steps // 2 :]).max()
    assert rest == pytest.approx(first, rel=1e-2)  # the band neither grows nor shrinks
    q, _, dh = _run("rk4", dt, steps)
    window = 100  # 10 s
    peaks = np.abs(dh[1 : 1 + (steps // window) * window]).reshape(-1, window).max(axis=1)
    assert dh[-1] < 0
    assert np.all(np.diff(peaks) > 0)
    assert peaks[-1] > 10 * peaks[0]
    assert np.abs(dh).max() > first  # after 300 s RK4 is past leapfrog's whole band
    # at equal cost (RK4 4 forces a step, leapfrog 1) leapfrog at dt/4 stays far below RK4's end
    assert np.abs(_run("leapfrog", dt / 4, 4 * steps)[2]).max() < 0.1 * abs(dh[-1])


def _step_jacobian(field, integrator, z: PhaseState, dt: float, u=None) -> torch.Tensor:
    shape = z.q.shape
    n = z.q.numel()

    def step(x):
        out = integrator.step(field, PhaseState(x[:n].reshape(shape), x[n:].reshape(shape)), u, dt)
        return torch.cat([out.q.reshape(-1), out.p.reshape(-1)])

    return torch.autograd.functional.jacobian(step, torch.cat([z.q.reshape(-1), z.p.reshape(-1)]))


def _symplectic_defect(field, z: PhaseState, dt: float = 0.05, name: str = "leapfrog", u=None) -> float:
    jac = _step_jacobian(field, get_integrator(name), z, dt, u)
    n = jac.shape[0] // 2
    eye = torch.eye(n, dtype=jac.dtype)
    j = torch.cat([torch.cat([0 * eye, eye], 1), torch.cat([-eye, 0 * eye], 1)])
    return float((jac.T @ j @ jac - j).abs().max())


def test_the_splitting_is_symplectic_without_friction_or_residual_and_not_with_them() -> None:
    chain = get_system("chain")
    z = chain.sample_initial(1, torch.Generator().manual_seed(3))  # 4 bodies: an 8 x 8 Jacobian
    assert _symplectic_defect(chain.field(), z) < 1e-12
    assert _symplectic_defect(chain.field(damping=0.2), z) > 1e-3
    assert _symplectic_defect(chain.field(), z, name="rk4") > 1e-9
    # a constant force is a shift of p: still symplectic (the lesson says so), though H is not conserved
    assert _symplectic_defect(chain.field(), z, u=torch.tensor([[0.8]], dtype=torch.float64)) < 1e-12
    # 1-D: M^T J M = det(M) J, and friction shrinks area as the damped flow does, e^(-γ dt / (m l²))
    z1 = _start(2.0)
    det = torch.linalg.det(_step_jacobian(PENDULUM.field(damping=0.2), get_integrator("leapfrog"), z1, 0.05))
    assert float(det) == pytest.approx(math.exp(-0.2 * 0.05 / (M * L * L)), abs=1e-6)
    learned = load_model(run_dir("pendulum", "hwm")).double()
    defects = {}
    for knobs in ((1.0, 1.0), (0.0, 1.0), (0.0, 0.0)):
        learned.dissipation_scale, learned.residual_scale = knobs
        defects[knobs] = _symplectic_defect(learned.field, z1)
    assert defects[1.0, 1.0] > 1e-5
    assert defects[0.0, 1.0] > 1e-7
    assert defects[0.0, 0.0] < 1e-12


def test_a_learned_model_conserves_its_own_modified_energy_not_the_true_one() -> None:
    learned = load_model(run_dir("pendulum", "hwm")).double()
    learned.dissipation_scale = learned.residual_scale = 0.0
    h = learned.dt
    with torch.no_grad():
        traj = rollout(learned.field, learned.integrator, _start(2.0), dt=h, steps=1000, record_energy=True)
        q, p = traj.q[0], traj.p[0]
        kinetic, potential = learned.field.hamiltonian.terms
        a = kinetic.inverse_mass().item()
        v1 = potential.grad_q(q, p)[:, 0, 0].numpy()
        v2 = ((potential.grad_q(q + 1e-4, p) - potential.grad_q(q - 1e-4, p)) / 2e-4)[:, 0, 0].numpy()
    own = traj.energy["total"][0].numpy()
    p_ = p[:, 0, 0].numpy()
    own_modified = own + h * h * ((a * p_) ** 2 * v2 / 12 - a * v1**2 / 24)
    true_modified = _modified_energy(q[:, 0, 0].numpy(), p_, h)
    assert np.ptp(own_modified) < np.ptp(own) / 50
    assert np.ptp(own_modified) < np.ptp(true_modified) / 50


# --- 03 learn a pendulum ------------------------------------------------------------------------------
def test_the_training_loss_is_the_rollout_through_the_models_integrator() -> None:
    from hwm_studio.data.simulate import simulate
    from hwm_studio.models import build_model, config_from_data
    from hwm_studio.training.fit import seed_everything

    data = simulate(PENDULUM, 4, 9, control="random", seed=0)
    seed_everything(0)
    model = build_model(config_from_data(data, "hwm"))
    q, p = torch.as_tensor(data.q, dtype=torch.float32), torch.as_tensor(data.p, dtype=torch.float32)
    obs = model.coder.observe(q, p)  # (B, 9, E, O): windows of h + 1 = 9 states
    u = torch.as_tensor(data.u[:, :8], dtype=torch.float32)
    with torch.no_grad():
        loss, _ = model.window_loss(obs, u, 8)
        traj = rollout(model.field, model.integrator, model.encode(obs[:, 0]), u, model.dt, 8)
        by_hand = (((model.decode(traj.q, traj.p) - obs) / model.obs_scale) ** 2).mean()
        assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)
        model.set_integrator("rk4")  # the integrator is inside the loss: another one changes it
        assert float(model.window_loss(obs, u, 8)[0]) != pytest.approx(float(loss), rel=1e-6)


# --- 05 pixels to phase space ----------------------------------------------------------------------------
@functools.cache
def _pixel(kind: str = "hwm-pixels"):
    return load_model(pixel_assets()["pendulum"][f"{kind}: hgn_pendulum"]).eval()


def _sign_and_offset(model, data) -> tuple[float, float]:
    """The latent angle is q = s θ + b: s and b from the model's readings of true frames (lesson 05)."""
    from hwm_studio.models.pixel.alignment import circular_correlation

    with torch.no_grad():
        q_read, _ = model.read_states(torch.as_tensor(data.frames))
    q_latent, theta = q_read[..., 0, 0].double().numpy().ravel(), data.q[..., 0, 0].ravel()
    sign = float(np.sign(circular_correlation(theta, q_latent)))
    return sign, float(np.angle(np.mean(np.exp(1j * (q_latent - sign * theta)))))


def test_the_pixel_pendulum_is_conservative_as_lesson_05_says() -> None:
    path = pixel_assets()["pendulum"]["hwm-pixels: hgn_pendulum"]
    config = read_config(path)
    assert (config.dissipation, config.input_map, config.residual) == ("none", "none", False)
    field = _pixel().dynamics.field
    assert field.dissipation is None
    assert field.input_map is None
    assert field.residual is None
    text = (EXAMPLES / "05_pixels_to_phase_space.ipynb").read_text()
    assert "no friction" in text
    assert "its friction and residual" not in text


def test_the_pixel_pendulum_beats_the_mean_frame_and_swings_with_the_elliptic_period() -> None:
    from hwm_studio.data.simulate import simulate
    from hwm_studio.protocols.hgn import DT, TASKS, dataset
    from hwm_studio.training.evaluate import evaluate_pixels

    model, system = _pixel(), TASKS["pendulum"].build()
    k = model.config.context_frames
    held_out = dataset("pendulum", 16, k, steps=30, seed=7)
    mean_frame = (dataset("pendulum", 64, k, steps=12, seed=0).frames / 255.0).mean(axis=(0, 1))
    baseline = float(((held_out.frames[:, k:] / 255.0 - mean_frame) ** 2).mean())
    with torch.no_grad():
        metrics, _, _ = evaluate_pixels(model, held_out, 30)
    assert metrics["pixel_mse"] < baseline / 30
    assert metrics["latent"]["value"] > 0.999  # circular correlation over 16 x 33 frames

    amplitudes = np.array([1.3, 1.8, 2.3, 2.8])  # inside the amplitudes its training data swung
    n = len(amplitudes)
    z0 = PhaseState(torch.tensor(amplitudes).reshape(n, 1, 1), torch.zeros(n, 1, 1, dtype=torch.float64))
    frames = torch.as_tensor(simulate(system, n, k, dt=DT, frame_size=32, initial=z0).frames)
    with torch.no_grad():
        q = model.predict_frames(frames, None, 240).trajectory.q[:, :, 0, 0].double().numpy()
    sign, offset = _sign_and_offset(model, held_out)
    theta = np.angle(np.exp(1j * sign * (q - offset)))
    g, l = system.params["g"], system.params["l"]
    for x, amplitude in zip(theta, amplitudes, strict=True):
        measured = np.diff(_upward_crossings(x, DT)).mean()
        assert measured == pytest.approx(_period(amplitude, l, g), rel=5e-3), amplitude
    assert _period(2.8, l, g) > 2 * math.pi * math.sqrt(l / g) * 2  # what no linear oscillator shows


# --- 08 what the model learned ----------------------------------------------------------------------------
def test_the_pretrained_pendulum_learned_its_potential_mass_friction_and_input_map() -> None:
    model = load_model(run_dir("pendulum", "hwm"))
    kinetic, potential = model.field.hamiltonian.terms
    seen = training_data(RECIPES["pendulum"]).q
    q = torch.linspace(float(seen.min()), float(seen.max()), 201).reshape(-1, 1, 1)
    zero = torch.zeros(1, 1, 1)
    with torch.no_grad():
        v = (potential.energy(q, q) - potential.energy(zero, zero)).numpy()  # aligned at q = 0
        gamma = float(model.field.dissipation.gamma())
    v_true = M * G * L * (1 - np.cos(q.flatten().numpy()))
    assert np.abs(v - v_true).max() < 0.005 * 2 * M * G * L  # within 0.5% of the barrier, where data went
    assert kinetic.inverse_mass().item() == pytest.approx(1 / (M * L * L), rel=0.01)
    assert model.field.input_map.g0.item() == pytest.approx(1.0, rel=0.01)
    assert gamma < 0.005  # the data are frictionless


def test_the_pretrained_chain_learned_its_springs_and_the_strength_of_each_coupling() -> None:
    from hwm_studio.training.evaluate import evaluate

    chain = get_system("chain")
    model = load_model(run_dir("chain", "hwm"))
    kinetic, potential, interaction = model.field.hamiltonian.terms
    d = torch.linspace(-0.5, 0.5, 101)
    one = torch.zeros(len(d), 4, 1)
    one[:, 0, 0] = d
    rest = torch.zeros(1, 4, 1)
    with torch.no_grad():
        v = (potential.energy(one, one) - potential.energy(rest, rest)).numpy()
        u = (interaction.energy(one, one) - interaction.energy(rest, rest)).numpy()
        gamma = float(model.field.dissipation.gamma())
    assert 2 * np.polyfit(d.numpy(), v, 2)[0] == pytest.approx(chain.params["k0"], rel=0.02)
    assert 2 * np.polyfit(d.numpy(), u, 2)[0] == pytest.approx(chain.params["k"], rel=0.02)
    assert kinetic.inverse_mass().item() == pytest.approx(1 / chain.params["m"], rel=0.01)
    g0 = model.field.input_map.g0.detach().flatten().numpy()
    assert g0[0] == pytest.approx(1.0, rel=0.01)
    assert np.abs(g0[1:]).max() < 0.01
    assert gamma < 0.005
    test = eval_data(RECIPES["chain"])
    metrics, _, _ = evaluate(model, test)
    states = test.q.reshape(-1, 4)
    for i in range(3):
        true = np.sqrt(np.mean((chain.params["k"] * (states[:, i] - states[:, i + 1])) ** 2))
        assert metrics["couplings"][f"{i}-{i + 1}"] == pytest.approx(true, rel=0.01)


def test_the_pixel_pendulum_learned_the_true_energy_up_to_one_scale() -> None:
    from hwm_studio.protocols.hgn import TASKS, dataset

    model = _pixel()
    truth = TASKS["pendulum"].build()
    m, l, g = (truth.params[k] for k in ("m", "l", "g"))
    kinetic, potential = model.dynamics.field.hamiltonian.terms
    frames = dataset("pendulum", 16, model.config.context_frames, steps=30, seed=7)
    sign, offset = _sign_and_offset(model, frames)
    angles = np.linspace(-np.pi, np.pi, 181)  # θ; the model's angle is q = s θ + b
    latent = torch.tensor(sign * angles + offset, dtype=torch.float32).reshape(-1, 1, 1)
    with torch.no_grad():
        v = (potential.energy(latent, latent) - potential.energy(latent[90:91], latent[90:91])).numpy()
        _, p_read = model.read_states(torch.as_tensor(frames.frames))
        a = kinetic.inverse_mass().item()
    v_true = m * g * l * (1 - np.cos(angles))
    scales = {
        "inverse mass": 1 / (a * m * l * l),
        "potential": float(v @ v_true / (v_true @ v_true)),
        "momenta": float(np.polyfit(frames.p[..., 0, 0].ravel(), sign * p_read[..., 0, 0].numpy().ravel(), 1)[0]),
    }
    c = scales["inverse mass"]
    assert abs(c - 1) > 0.1  # a scale of its own, not the true one ...
    for where, value in scales.items():
        assert value == pytest.approx(c, rel=0.02), where  # ... the same in all three places
    assert np.abs(v - c * v_true).max() < 0.02 * c * 2 * m * g * l


@pytest.mark.slow
def test_a_chain_allowed_every_pair_finds_its_neighbour_graph_and_its_friction() -> None:
    """Lesson 08 section 3 at its quick budget: 120 steps, every pair gated, an L1 pressure on each."""
    from hwm_studio.data.simulate import simulate
    from hwm_studio.models import build_model, config_from_data
    from hwm_studio.training.evaluate import evaluate
    from hwm_studio.training.fit import TrainConfig, fit, seed_everything

    chain = get_system("chain")
    data = simulate(chain, 48, 60, control="random", damping=0.2, seed=0)
    held_out = simulate(chain, 8, 100, control="random", damping=0.2, seed=1)
    seed_everything(0)
    model = build_model(
        config_from_data(data, "hwm", pairs=None, per_pair=True, coupling_sparsity=1e-2, residual=False)
    )
    result = fit(model, data, TrainConfig(steps=120, horizon=8, val_every=0, device="cpu"))
    assert result.status == "completed"
    couplings = evaluate(model, held_out)[0]["couplings"]
    assert len(couplings) == 6
    springs = [couplings[f"{i}-{i + 1}"] for i in range(3)]
    others = [v for pair, v in couplings.items() if pair not in ("0-1", "1-2", "2-3")]
    assert min(springs) > 3 * max(others)
    with torch.no_grad():
        assert float(model.field.dissipation.gamma()) == pytest.approx(0.2, rel=0.15)
        g0 = model.field.input_map.g0.flatten().numpy()
    assert g0[0] == pytest.approx(1.0, rel=0.03)
    assert np.abs(g0[1:]).max() < 0.05
