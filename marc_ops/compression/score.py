"""SCORE (Wang et al., arXiv 2603.26365): a learned per-token keep policy on [content; surprise].

The spec is ``SCORE.md``; equation numbers are the paper's. Per video, ``X`` (T, N, D) is the merger
output (T temporal groups of N tokens, D the LLM width):

1. State (eqs 2-3): ``ΔX[t] = X[t] − X[t−1]`` with a virtual zero frame, so ``ΔX[1] = X[1]``;
   ``h = [x; Δx]`` (2D, content first). ``surprise_state``.
2. Policy (eq 4): ``p = σ(f_θ(h))`` per token, no mixing across tokens. ``ScorePolicy``.
3. Rollouts (training): K masks ``m ~ Bernoulli(p)``, independent across k. ``sample_masks``.
4. Reward (eqs 5-6): ``ΔCE = τ·CE_base − CE`` (``performance_reward``) and ``S = 1 − mean(M)``
   (``sparsity``), never summed.
5. Split advantage (eq 7): safe (ΔCE > 0) ``A = ΔCE·(S − μ⁺)/(σ⁺ + ε)``, penalty ``A = ΔCE·S``.
   ``split_advantage``.
6. Objective (eqs 8-9): ``L = −(1/K)·Σ_k A_k·mean_{t,i} log π(m)``, REINFORCE. ``policy_loss``.
7. Inference (sec 4.5): keep the ``⌊ρ·T·N⌋`` tokens with the largest logits. ``select_topk``, and the
   compressor ``score`` (``compress("score", tokens, grid, retention=ρ, policy=...)``).

Decisions where the paper is silent (SCORE.md section 13), each a field or the default named here:

- "Frame" = one temporal group; X cast to float32 before differencing; nothing resets at clip or shot
  boundaries (``reset_at_clips=false``: the state never sees clip ids). ``state="x"`` is the
  residual ablation (Table 5, h = x, width D).
- MLP ``LayerNorm(in) → Linear(in→512) → GELU → Linear(512→1)``, float32 (``ScorePolicyConfig``:
  ``hidden``, ``state``, ``input_norm: layernorm|none``, ``seed``); last layer N(0, 0.01²), bias 0, so
  p ≈ 0.5 at start; the other layers get PyTorch's default uniform(±1/√fan_in), all from ``seed``.
- log π via log-sigmoid of the logit: log p = logσ(z), log(1−p) = logσ(−z).
- Eq 7: σ⁺ is the population std (ddof 0), ε = 1e-6; ΔCE = 0 is the penalty zone; one safe rollout,
  or safe rollouts with equal S, get A = 0; penalty advantages are not centred.
- Top-K: exact-decimal floor of ρ·T·N (⌊0.29·100⌋ = 29), at least 1 token, over all groups jointly;
  ranked by logit, ties to the lower flat index ``t·N + i``, output ascending. Query-agnostic.
- τ, K, the optimiser and the data belong to the training loop (``marc_ops.train``), not here.
"""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from safetensors.torch import load_file, save_file
from torch import nn

from marc_ops.compression.base import CompressedVideo, Compressor, select
from marc_ops.io import atomic_path, check_safetensors, write_text

State = Literal["x", "x_dx"]
POLICY_ASSET = "score_policy[stage] (assets/score_policy/<stage>/policy.safetensors)"


def surprise_state(tokens: torch.Tensor, *, state: State = "x_dx") -> torch.Tensor:
    """tokens X (T, N, D), groups in time order -> H (T, N, 2D) = [X; ΔX] in float32 (eqs 2-3), with
    ΔX[0] = X[0] (a virtual zero frame before the video); ``state="x"``: H = X (T, N, D), the ablation."""
    x = tokens.to(torch.float32)
    if state == "x":
        return x
    delta = torch.cat([x[:1], x[1:] - x[:-1]], dim=0)
    return torch.cat([x, delta], dim=-1)


class ScorePolicyConfig(BaseModel):
    """The policy network's shape and init (SCORE.md section 3); the LLM width D comes with the backbone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: int = Field(default=512, ge=1, description="width of the MLP's hidden layer")
    state: State = Field(default="x_dx", description="x_dx: h = [x; Δx] (SCORE); x: h = x (Table 5 ablation)")
    input_norm: Literal["layernorm", "none"] = Field(
        default="layernorm", description="the policy's first op on h: a LayerNorm over its width, or none"
    )
    seed: int = Field(default=0, description="seed of the weights' initialisation")

    def in_features(self, d_model: int) -> int:
        """The width of h for an LLM of width ``d_model``: 2D for ``x_dx``, D for ``x``."""
        return 2 * d_model if self.state == "x_dx" else d_model


class ScorePolicy(nn.Module):
    """p_{t,i} = σ(f_θ(h_{t,i})) (eq 4), one token at a time, float32, for an LLM of width ``d_model`` (D)."""

    def __init__(self, d_model: int, config: ScorePolicyConfig | None = None) -> None:
        super().__init__()
        self.config = config or ScorePolicyConfig()
        self.d_model = d_model
        width = self.config.in_features(d_model)
        self.norm = nn.LayerNorm(width) if self.config.input_norm == "layernorm" else nn.Identity()
        self.hidden = nn.Linear(width, self.config.hidden)
        self.out = nn.Linear(self.config.hidden, 1)
        generator = torch.Generator().manual_seed(self.config.seed)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(width)  # PyTorch's own Linear init, drawn from the seeded generator
            self.hidden.weight.uniform_(-bound, bound, generator=generator)
            self.hidden.bias.uniform_(-bound, bound, generator=generator)
            self.out.weight.normal_(0.0, 0.01, generator=generator)
            self.out.bias.zero_()

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """state: (T, N, in) float32 -> logits z (T, N)."""
        return self.out(F.gelu(self.hidden(self.norm(state)))).squeeze(-1)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """state: (T, N, in) -> z (T, N), the logit of keeping each token."""
        return self(state)

    def probabilities(self, state: torch.Tensor) -> torch.Tensor:
        """state: (T, N, in) -> p = σ(z) (T, N), each in (0, 1)."""
        return torch.sigmoid(self(state))


def _config_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _check_policy_files(path: Path) -> None:
    """A missing weights or config file is an error that names it and the asset that writes it."""
    for needed in (path, _config_path(path)):
        if not needed.is_file():
            raise FileNotFoundError(
                f"score: policy file {needed} does not exist; it is written by the asset {POLICY_ASSET} "
                "(train the SCORE policy, or point the option policy at a saved checkpoint)"
            )


def save_policy(policy: ScorePolicy, config: ScorePolicyConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``policy``'s weights to ``path`` (safetensors, no pickle) and ``{d_model, config}`` beside it
    (``path`` with suffix .json); ``config`` must be the one the policy was built with."""
    if config != policy.config:
        raise ValueError(f"save_policy: config {config} is not the policy's own {policy.config}")
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}, str(tmp))
    meta = {"d_model": policy.d_model, "config": policy.config.model_dump()}
    write_text(_config_path(path), json.dumps(meta, indent=2) + "\n")
    return path


def load_policy(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ScorePolicy:
    """The policy ``save_policy`` wrote to ``path``, on ``device``, in eval mode; the JSON config beside the
    weights must describe exactly their tensors and shapes."""
    path = Path(path)
    _check_policy_files(path)
    meta = json.loads(_config_path(path).read_text())
    policy = ScorePolicy(int(meta["d_model"]), ScorePolicyConfig.model_validate(meta["config"]))
    weights = load_file(str(check_safetensors(path)))
    expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        raise ValueError(
            f"score: the weights in {path} do not match the config in {_config_path(path)} "
            f"(d_model={meta['d_model']}, {meta['config']}): expected {expected}, found {found}"
        )
    policy.load_state_dict(weights)
    return policy.to(device).eval()


def sample_masks(probabilities: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """p (T, N) -> K rollouts (K, T, N) bool (True = kept), m ~ Bernoulli(p) independently per k and token.

    No gradient flows through p; ``generator`` lives on p's device, and the same seed gives the same masks.
    """
    p = probabilities.detach()
    draws = torch.rand((k, *p.shape), generator=generator, device=p.device, dtype=p.dtype)
    return draws < p  # rand is in [0, 1): p = 0 keeps nothing, p = 1 everything


def sparsity(masks: torch.Tensor) -> torch.Tensor:
    """masks (K, T, N) bool -> S (K,) float32, the fraction of tokens each rollout drops (eq 6)."""
    flat = masks.flatten(1)
    dropped = (~flat).sum(dim=1).to(torch.float64)
    return (dropped / flat.shape[1]).to(torch.float32)


def performance_reward(ce: torch.Tensor, ce_base: float, *, tau: float) -> torch.Tensor:
    """ce (K,) rollout cross-entropies -> ΔCE = τ·CE_base − CE (K,), R_perf (eq 5); > 0 means feasible."""
    return tau * ce_base - ce


def split_advantage(delta_ce: torch.Tensor, sparsity: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """ΔCE (K,), S (K,) of one video's rollouts -> A (K,) in ΔCE's dtype (eq 7, SCORE.md section 6).

    Safe (ΔCE > 0): ``ΔCE·(S − μ⁺)/(σ⁺ + ε)``, μ⁺ and σ⁺ the mean and population std of S over the safe
    rollouts; penalty (ΔCE ≤ 0): ``ΔCE·S``.
    """
    d, s = delta_ce.to(torch.float64), sparsity.to(torch.float64)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(
            f"delta_ce and sparsity must both be (K,); got {tuple(d.shape)} and {tuple(s.shape)}"
        )
    if not (torch.isfinite(d).all() and torch.isfinite(s).all()):
        raise ValueError(f"split_advantage needs finite ΔCE and S; got ΔCE={d.tolist()}, S={s.tolist()}")
    advantage = d * s
    safe = d > 0
    safe_s = s[safe]
    if safe_s.numel() and not bool((safe_s == safe_s[0]).all()):  # equal S (or one rollout): A = 0
        spread = safe_s.std(correction=0)
        advantage[safe] = d[safe] * (safe_s - safe_s.mean()) / (spread + eps)
    else:
        advantage[safe] = 0.0
    return advantage.to(delta_ce.dtype)


def policy_loss(logits: torch.Tensor, masks: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """logits z (T, N), masks (K, T, N) bool, advantages A (K,) -> the scalar loss of one video (eq 8)

    ``L = −(1/K)·Σ_k A_k·(1/TN)·Σ_{t,i} log π(m_{k,t,i})``, A held constant; ∂L/∂z = −Σ_k A_k·(m_k − p)/(K·TN).
    """
    if masks.shape[1:] != logits.shape or advantages.shape != masks.shape[:1]:
        raise ValueError(
            f"policy_loss needs logits (T, N), masks (K, T, N) and advantages (K,); got "
            f"{tuple(logits.shape)}, {tuple(masks.shape)}, {tuple(advantages.shape)}"
        )
    kept = masks.to(logits.dtype)
    log_pi = kept * F.logsigmoid(logits) + (1.0 - kept) * F.logsigmoid(-logits)
    per_rollout = log_pi.flatten(1).mean(dim=1)
    return -(advantages.detach().to(logits.dtype) * per_rollout).mean()


def keep_count(retention: float, n_tokens: int) -> int:
    """K_keep = max(1, ⌊ρ·n⌋) with ρ read as the decimal it prints as (⌊0.29·100⌋ = 29).

    A tolerance of n·2⁻⁵⁰ lets a retention that came from a budget b/n (a float a hair under b/n) give b;
    it is far below the gap any decimal ρ with a few digits leaves to the next integer.
    """
    if not 0.0 < retention <= 1.0 or n_tokens < 1:
        raise ValueError(
            f"keep_count needs 0 < retention <= 1 and n_tokens >= 1; got {retention!r}, {n_tokens!r}"
        )
    exact = Fraction(repr(float(retention))) * n_tokens
    return max(1, math.floor(exact + Fraction(n_tokens, 2**50)))


def select_topk(logits: torch.Tensor, retention: float) -> torch.Tensor:
    """logits (T, N) -> (K_keep,) long, the flat indices t·N + i of the kept tokens, ascending.

    Ranked by logit, largest first; equal logits go to the lower flat index (a stable sort).
    """
    flat = logits.detach().flatten()
    order = torch.sort(flat, descending=True, stable=True).indices
    return torch.sort(order[: keep_count(retention, flat.numel())]).values


class ScoreOptions(BaseModel):
    """Which trained policy ranks the tokens; ρ is the call's ``retention``."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    policy: ScorePolicy | str | None = Field(
        default=None,
        description="a ScorePolicy, or the path of a saved one (policy.safetensors with its .json), "
        f"written by the asset {POLICY_ASSET}",
    )
    state: State = Field(default="x_dx", description="the policy's input state; must match the policy's")

    @field_validator("policy", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


@lru_cache(maxsize=4)
def _cached_policy(path: str, mtime_ns: int, device: str) -> ScorePolicy:
    """A saved policy, loaded once per (file, modification time, device) rather than once per video."""
    return load_policy(path, device)


def _resolve_policy(options: ScoreOptions, device: torch.device) -> ScorePolicy:
    if options.policy is None:
        raise ValueError(
            f"score needs a trained policy: train one (asset {POLICY_ASSET}) and pass options "
            "{'policy': '<dir>/policy.safetensors'}, or pass a ScorePolicy"
        )
    if isinstance(options.policy, ScorePolicy):
        policy = options.policy
    else:
        path = Path(options.policy)
        _check_policy_files(path)
        policy = _cached_policy(str(path.resolve()), path.stat().st_mtime_ns, str(device))
    if policy.config.state != options.state:
        raise ValueError(
            f"score: option state={options.state!r} but the policy was trained on state={policy.config.state!r}"
        )
    return policy


def _score_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: ScoreOptions
) -> CompressedVideo:
    """tokens (T, P, D) -> the keep_count(ρ, T·P) tokens with the largest logits, at their own positions."""
    policy = _resolve_policy(options, tokens.device)
    if tokens.shape[-1] != policy.d_model:
        raise ValueError(
            f"score: the policy is for LLM width {policy.d_model}, the tokens have {tokens.shape[-1]}"
        )
    device = next(policy.parameters()).device
    with torch.no_grad():
        logits = policy.logits(surprise_state(tokens, state=options.state).to(device))
    kept = select_topk(logits, retention)
    return select(tokens, grid, kept, "score", f"state={options.state}")


def _score_count(n_groups: int, grid: tuple[int, int], retention: float, options: ScoreOptions) -> int:
    return keep_count(retention, n_groups * grid[0] * grid[1])


SCORE = Compressor(
    name="score",
    run=_score_run,
    options=ScoreOptions,
    count=_score_count,
    description="SCORE: a trained per-token policy on [x; Δx] keeps the floor(ρ·T·P) tokens it rates highest",
)
