"""The studio's help, "What am I looking at?": a short explanation at the top of every studio tab, with the equation
behind its views.

Plain Markdown with Unicode math (no $...$): Panel would load KaTeX or MathJax for LaTeX, and the
page must load offline with no request outside the server. The Explore tab's text avoids the
abbreviation its metrics view shows (tests find that view by its text). Each tab's component puts `help_card`
at the top of its layout, collapsed, so a notebook showing one component shows its help too.
"""

from __future__ import annotations

import panel as pn

TITLE = "What am I looking at?"

HELP: dict[str, str] = {
    "Explore": """
The selected model and the true system, rolled out from the same start under the same actions.
The model is a port-Hamiltonian system **dz/dt = (J − R) ∇H + G u + r**, z = (q, p), with the learned
energy **H = T(p) + Σᵢ V(qᵢ) + Σᵢ<ⱼ U(qᵢ, qⱼ)**.

- **Phase portrait**: (q, p) of the chosen entity and coordinate, truth and model; contours of the
  model's H where it has one.
- **Energy decomposition and ledger**: the model's T, V, U and H along its rollout, and where the
  energy went: **H(t) − H(0) = −∫ ∇Hᵀ R ∇H dt + ∫ ∇Hᵀ G u dt + ∫ ∇Hᵀ r dt** (friction, control,
  residual); the balance error is what the integrator's step leaves unaccounted.
- **Normalised state error**: **e(t) = √(½ (‖Δq / σ_q‖² + ‖Δp / σ_p‖²))**, σ the spread of each
  coordinate; the valid prediction time is the number of steps before e first exceeds 0.1.
- **Truth | model | error**: the two rendered side by side, and their difference.
- **Learned couplings**: each interacting pair's RMS force −∇U on the visited states.
""",
    "Compare": """
The selected model (left) and the baseline (right), each rolled out from the Explore tab's start
under its actions, each against the same truth.

- **True H along each rollout**: the true energy H(ẑ(t)) of each prediction. Without friction or
  actions the truth's is constant (dH/dt = ∇Hᵀ J ∇H = 0, J antisymmetric); a model whose line
  drifts is gaining or losing energy the system never had.
- **Normalised state error**: e(t) = √(½ (‖Δq / σ_q‖² + ‖Δp / σ_p‖²)) of both models, as on Explore
  (log scale: exponential growth is a straight line).
""",
    "Train": """
A model learning live, in a background thread, from the selected system simulated or a workspace file.

- **Training loss**: **L = mean over windows and steps k ≤ horizon of ((ẑₖ − zₖ) / s)² + w · mean (r / s)²**,
  ẑ rolled out from each window's first state, s the data's scale per coordinate, and the second
  term (the HWM only) keeping the residual small.
- **Validation rollout MSE**: the same error over whole held-out trajectories, never trained on.
  Checkpoints are saved when it improves. A loss falling while it rises is overfitting.
Choose the live run as the model on the Explore tab to watch its predictions change.
""",
    "Plan": """
The model imagines many futures; the planner (CEM or MPPI) keeps the cheapest; MPC applies the first
action to the true system and plans again from where the truth went.

- **Imagined futures**: the candidates of the last iteration, in the model (grey), the elites (orange),
  the chosen plan (green), and the executed true trajectory (black).
- **Cost** of a future of T steps: **J = Σₜ c(zₜ, uₜ)**, e.g. swing-up: (1 − cos(q − q_up)) + 0.1 p²,
  energy shaping: (H(zₜ) − H*)², plus the effort w u². CEM refits a Gaussian to the elites
  (the plan is its mean); MPPI weights them by exp(τ (R − R_best)), R = −J.
- The status reports the **chosen plan's imagined cost**: what the model expects. The return of an
  MPC run is −Σ c on the true steps: what it got. A planner picks what looks best *in the model*,
  so where the model is wrong the two differ.
""",
    "Play": """
Drive the model from the keyboard (arrows: ± the action bound × gain) beside the truth under the
same held actions: the model (left) runs on its own from the last resync, so the two drift apart
at the rate of the model's error.

- **Ledger bars**: the model's T, V, U and H, and its energy balance
  **H(t) − H(0) = −dissipated + control work + residual work + balance error**, with
  dissipated = ∫ ∇Hᵀ R ∇H dt ≥ 0 and control work = ∫ ∇Hᵀ G u dt: the work your keys did.
- **Phase trail**: the first coordinate's (q, p), model and truth.
Resync copies the true state into the model; Save episode writes what was played as a trajectory
file the Train tab can learn from.
""",
    "Data efficiency": """
How prediction quality grows with the amount of training data, as `benchmarks/data_efficiency.py`
measured it (its results file; nothing here trains).

- **VPT** against the number of training trajectories: steps until the normalised error
  e(t) = √(½ (‖Δq / σ_q‖² + ‖Δp / σ_p‖²)) first exceeds 0.1, on held-out starts over the scored steps.
- **True-energy MSE**: the mean of (H(ẑₜ) − H(zₜ))² with the system's true H.
A line per model is the mean over training seeds, the whisker the range from the lowest to the
highest seed: one seed's number is a sample, not the answer.
""",
}


def help_card(tab: str) -> pn.Card:
    """The tab's help, a collapsed card titled "What am I looking at?"."""
    return pn.Card(pn.pane.Markdown(HELP[tab].strip(), sizing_mode="stretch_width"), title=TITLE, collapsed=True,
                   sizing_mode="stretch_width", name=f"help: {tab}")  # fmt: skip
