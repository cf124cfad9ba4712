"""Loss functions shared by several algorithms: pure functions of tensors.

Each reads like its equation; the algorithms compose them.
"""

from __future__ import annotations

import torch

__all__ = [
    "td_target",
    "ensemble_td_loss",
    "expectile_loss",
    "advantage_weights",
    "sampled_advantage",
    "crr_weights",
    "conservative_penalty",
    "max_std_penalty",
    "bellman_inconsistency",
    "mmd",
    "ensemble_gradient_similarity",
    "density_ratio_loss",
    "quantile_huber_loss",
    "quantile_midpoints",
]


def td_target(
    rewards: torch.Tensor, dones: torch.Tensor, next_values: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``r + gamma * (1 - done) * V(s')`` -- no bootstrap past a true terminal only."""
    return rewards + gamma * (1.0 - dones) * next_values


def ensemble_td_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``sum_i mean_b (Q_i(s, a) - y)^2`` for critic outputs ``q [N, B]`` and targets ``y [B]``.

    One fused op (``[B]`` broadcast to ``[N, B]``); every critic regresses on the same target.
    """
    return torch.nn.functional.mse_loss(q, target.expand_as(q), reduction="sum") / q.shape[1]


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2, ``|tau - 1(u < 0)| * u^2`` averaged (IQL, Kostrikov et al., 2021, eq. 5).

    ``diff = target - prediction``; ``expectile = 0.5`` is the mean squared error, larger values
    push the prediction towards an upper expectile of the target.
    """
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.pow(2)).mean()


def advantage_weights(
    advantage: torch.Tensor, beta: float, max_weight: float, detach: bool = True
) -> torch.Tensor:
    """``min(exp(beta * A), max_weight)`` -- exponentiated advantages, clipped (AWR, IQL, AWAC).

    ``beta`` is the inverse temperature. Gradients never flow through the weights unless
    ``detach`` is False (Tianshou's discrete CRR: :class:`~offrl.algos.discrete_crr.DiscreteCRR`
    with ``weight_gradient``).
    """
    return torch.exp(beta * (advantage.detach() if detach else advantage)).clamp(max=max_weight)


def sampled_advantage(q: torch.Tensor, q_pi: torch.Tensor, baseline: str = "mean") -> torch.Tensor:
    """``A(s, a) = Q(s, a) - V(s)`` with ``V(s)`` from ``m`` policy samples (CRR, AWAC).

    ``q`` is ``[B]`` (dataset actions), ``q_pi`` is ``[m, B]`` (``Q(s, a_j)``, ``a_j ~ pi(s)``);
    ``baseline`` is ``"mean"`` (``V = 1/m sum_j Q(s, a_j)``) or ``"max"`` (``V = max_j``),
    Wang et al., 2020, section 3. With ``m = 1`` both are AWAC's ``Q(s, a) - Q(s, a')``.
    """
    if baseline == "mean":
        return q - q_pi.mean(0)
    if baseline == "max":
        return q - q_pi.amax(0)
    raise ValueError(f"unknown advantage baseline {baseline!r}; use 'mean' or 'max'")


def crr_weights(
    advantage: torch.Tensor,
    weight_type: str,
    beta: float,
    max_weight: float,
    detach: bool = True,
) -> torch.Tensor:
    """CRR's filter ``f(A)``: ``1[A > 0]`` (``"binary"``) or ``min(exp(A / beta), max_weight)``
    (``"exp"``) (Wang et al., 2020, eqs. 3-4). Gradients never flow through the weights, as in
    the paper, unless ``detach`` is False (``"exp"`` only; the indicator has no gradient)."""
    if weight_type == "binary":
        return (advantage.detach() > 0).to(advantage.dtype)
    if weight_type == "exp":
        return advantage_weights(advantage, 1.0 / beta, max_weight, detach)
    raise ValueError(f"unknown weight type {weight_type!r}; use 'binary' or 'exp'")


def conservative_penalty(
    q_sampled: torch.Tensor,
    log_density: torch.Tensor | float,
    q_data: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """CQL(H)'s regulariser ``E_s[ log sum_a exp Q(s, a) - Q(s, a_data) ]`` (Kumar et al., 2020,
    eq. 4), the log-sum-exp estimated by importance sampling (appendix F):

        T * logsumexp_j( (Q(s, a_j) - log mu(a_j | s)) / T )  -  Q(s, a_data),  averaged over s.

    ``q_sampled`` is ``[..., M, B]`` (``M`` sampled actions per state), ``log_density`` is
    ``[M, B]`` (the log-density of the proposal each sample came from; ``0.0`` for discrete
    actions, where the sum runs over every action exactly), ``q_data`` is ``[..., B]``
    -- or ``[..., B']`` for other states than the sampled ones (COMBO pushes down on data and
    model states, up on the data's alone); returns ``[...]`` (e.g. one value per critic). As in
    the official code the sum is not divided by ``M`` (that would subtract the constant
    ``T log M``).
    """
    ood = temperature * torch.logsumexp((q_sampled - log_density) / temperature, dim=-2)
    if q_data.shape[-1] != ood.shape[-1]:  # pushed down and up on different states (COMBO)
        return ood.mean(-1) - q_data.mean(-1)
    return (ood - q_data).mean(-1)


def max_std_penalty(std: torch.Tensor) -> torch.Tensor:
    """MOPO's uncertainty of a model transition (Yu et al., 2020, section 4.3): the largest
    norm of the predicted standard deviation over the ensemble's members, ``max_i ||std_i||_2``.
    ``std`` is ``[E, B, D]``; returns ``[B]``."""
    return std.norm(dim=-1).amax(0)


def bellman_inconsistency(next_q: torch.Tensor) -> torch.Tensor:
    """MOBILE's uncertainty (Sun et al., 2023, eq. 6; official ``compute_lcb``): the standard
    deviation over the ensemble's members of each member's expected next value. ``next_q`` is
    ``[S, E, B]``, the target value at ``S`` sampled next states of each of ``E`` members;
    returns ``[B]`` (mean over samples, then the unbiased std over members)."""
    return next_q.mean(0).std(0)


def mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: str = "laplacian",
    sigma: float = 20.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Maximum mean discrepancy between sample sets ``x [..., n, d]`` and ``y [..., m, d]``.

    BEAR's support-matching distance (Kumar et al., 2019, section 4; official code
    github.com/aviralkumar2907/BEAR, ``mmd_loss_laplacian`` / ``mmd_loss_gaussian``)::

        sqrt( mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j) + eps )

    the biased (V-statistic) estimator -- diagonal terms included -- so that identical sample
    sets give exactly ``sqrt(eps)``. Kernels, as in the official code and d3rlpy (note ``sigma``,
    not ``sigma^2``, in both): ``"laplacian"`` ``exp(-||x - y||_1 / (2 sigma))`` and
    ``"gaussian"`` ``exp(-||x - y||_2^2 / (2 sigma))``. ``eps`` keeps the square root's gradient
    finite at zero. Returns ``[...]``, one distance per leading index (e.g. per state).
    """
    if kernel == "laplacian":

        def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            # [..., n, 1, d] - [..., 1, m, d] -> [..., n, m]
            return torch.exp(-(a.unsqueeze(-2) - b.unsqueeze(-3)).abs().sum(-1) / (2.0 * sigma))

    elif kernel == "gaussian":

        def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.exp(-(a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1) / (2.0 * sigma))

    else:
        raise ValueError(f"unknown MMD kernel {kernel!r}; use 'laplacian' or 'gaussian'")
    sq = k(x, x).mean((-2, -1)) + k(y, y).mean((-2, -1)) - 2.0 * k(x, y).mean((-2, -1))
    return (sq.clamp_min(0.0) + eps).sqrt()  # clamp: rounding can make sq slightly < 0


def ensemble_gradient_similarity(grads: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """EDAC's diversity loss: ``1 / (N - 1) * sum_{i != j} <g_i, g_j> / (|g_i| |g_j|)``, averaged
    over the batch, for the critics' action-gradients ``grads [N, B, act]`` (``g_i =
    grad_a Q_i(s, a)``) (An et al., 2021, eq. 7; CORL ``edac.py``, ``EPS = 1e-8``).

    Each gradient is normalised (``g / (|g| + eps)``), and the sum over ordered pairs ``i != j``
    is ``|sum_i g_i|^2 - sum_i |g_i|^2``: O(N) work instead of the N x N Gram matrix, the same
    value. Divided by ``N - 1``, it is ``N`` times the mean pairwise cosine similarity.
    """
    n = grads.shape[0]
    unit = grads / (grads.norm(dim=-1, keepdim=True) + eps)  # [N, B, act]
    total = unit.sum(0).pow(2).sum(-1)  # [B]: |sum_i u_i|^2
    diagonal = unit.pow(2).sum((0, -1))  # [B]: sum_i |u_i|^2
    return ((total - diagonal) / max(n - 1, 1)).mean()


def density_ratio_loss(w_offline: torch.Tensor, w_online: torch.Tensor) -> torch.Tensor:
    """Balanced Replay's density-ratio objective (Lee et al., 2021, section 4.1): the
    variational form of the Jensen-Shannon f-divergence between the online (P) and offline (Q)
    data, whose minimiser over ``w >= 0`` is the ratio ``w(s, a) = dP / dQ``::

        E_Q[ f*(f'(w)) ] - E_P[ f'(w) ],   f'(w) = log(2w / (w + 1)),  f*(f'(w)) = -log(2 / (w + 1))

    ``w_offline`` / ``w_online``: the estimator's (non-negative) outputs on offline and online
    samples. The ``1e-10`` inside the logs is the official code's guard at ``w = 0``.
    """
    f_star = -torch.log(2.0 / (w_offline + 1.0) + 1e-10)
    f_prime = torch.log(2.0 * w_online / (w_online + 1.0) + 1e-10)
    return f_star.mean() - f_prime.mean()


def quantile_midpoints(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``tau_hat_i = (2 i + 1) / (2 n)``, ``i = 0..n-1``: the quantile levels QR-DQN's ``n``
    outputs estimate (Dabney et al., 2018, lemma 2)."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n


def quantile_huber_loss(
    quantiles: torch.Tensor, target: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """QR-DQN's quantile regression loss (Dabney et al., 2018, eq. 10):

        sum_i  mean_j  |tau_hat_i - 1[u_ij < 0]| * L_kappa(u_ij) / kappa,   u_ij = T_j - theta_i

    with ``L_kappa`` the Huber loss of threshold ``kappa``; averaged over the batch.
    ``quantiles`` (``theta``) is ``[B, N]``, at the levels :func:`quantile_midpoints`;
    ``target`` (``T theta'``, no gradient) is ``[B, M]``.

    Computed without the ``[B, N, M]`` table of pairs: with the targets sorted, each
    ``theta_i`` splits them into four runs (``u < -kappa``, ``-kappa <= u < 0``, ``0 <= u <=
    kappa``, ``u > kappa``) on which the loss and its gradient are sums of ``T`` and ``T^2``,
    read from prefix sums (in float64) at the runs' ends. ``O(B N log M)`` instead of ``O(B N
    M)``: at QR-DQN's 200 quantiles, batch 32, about 40x less work than the pairwise table.
    """
    return _QuantileHuber.apply(quantiles, target.detach(), float(kappa))


class _QuantileHuber(torch.autograd.Function):
    """:func:`quantile_huber_loss` by sorted prefix sums; its gradient flows to the quantiles
    only."""

    @staticmethod
    def _runs(theta: torch.Tensor, target: torch.Tensor, kappa: float) -> tuple[torch.Tensor, ...]:
        """Per ``theta_i`` (float64 ``[B, N]``): the counts and the sums of ``T`` and ``T^2``
        of the four runs of sorted targets, and the weights ``tau`` and ``1 - tau``."""
        t = target.sort(-1).values
        zero = t.new_zeros(t.shape[0], 1)
        p1 = torch.cat([zero, t.cumsum(-1)], -1)
        p2 = torch.cat([zero, (t * t).cumsum(-1)], -1)
        m = t.shape[-1]
        edges = [
            torch.zeros_like(theta, dtype=torch.long),
            torch.searchsorted(t, theta - kappa, side="left"),
            torch.searchsorted(t, theta, side="left"),
            torch.searchsorted(t, theta + kappa, side="right"),
            torch.full_like(theta, m, dtype=torch.long),
        ]
        counts, s1, s2 = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            counts.append((hi - lo).to(theta.dtype))
            s1.append(p1.gather(-1, hi) - p1.gather(-1, lo))
            s2.append(p2.gather(-1, hi) - p2.gather(-1, lo))
        tau = quantile_midpoints(theta.shape[-1], theta.device).to(theta.dtype)
        return (*counts, *s1, *s2, tau.expand_as(theta), 1.0 - tau.expand_as(theta))

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        quantiles: torch.Tensor,
        target: torch.Tensor,
        kappa: float,
    ) -> torch.Tensor:
        theta, t = quantiles.detach().double(), target.double()
        n1, n2, n3, n4, a1, a2, a3, a4, b1, b2, b3, b4, tau, rest = _QuantileHuber._runs(
            theta, t, kappa
        )
        # sum over a run of (T - theta)^2 = S2 - 2 theta S1 + n theta^2.
        sq2 = b2 - 2 * theta * a2 + n2 * theta * theta
        sq3 = b3 - 2 * theta * a3 + n3 * theta * theta
        per = (
            rest * kappa * (n1 * (theta - 0.5 * kappa) - a1)  # u < -kappa: kappa (|u| - kappa/2)
            + rest * 0.5 * sq2
            + tau * 0.5 * sq3
            + tau * kappa * (a4 - n4 * (theta + 0.5 * kappa))  # u > kappa
        )
        batch, m = theta.shape[0], t.shape[-1]
        scale = 1.0 / (kappa * m * batch)
        # d/dtheta_i: -sum_j w_ij clamp(u_ij, -kappa, kappa), times the same scale.
        grad = -(
            -rest * kappa * n1
            + rest * (a2 - theta * n2)
            + tau * (a3 - theta * n3)
            + tau * kappa * n4
        )
        ctx.save_for_backward((grad * scale).to(quantiles.dtype))
        return (per.sum() * scale).to(quantiles.dtype)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * grad_out, None, None
