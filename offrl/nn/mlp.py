"""The ensemble MLP: ``E`` MLPs with batched weights in one flat parameter.

Every MLP in offrl is an :class:`EnsembleMLP`: ``E`` independent MLPs of the same shape whose
weights are batched (``W_l: [E, in, out]``) and evaluated with one batched matmul per layer, never
a Python loop over members. ``E = 1`` is an ordinary MLP; twin critics are ``E = 2``; SAC-N/EDAC
use ``E = 10 ... 500``; ``K`` seeds of one algorithm can share the axis the same way. A layer
stack is ``Linear -> [LayerNorm] -> activation`` per hidden layer (``norm_after_activation``
swaps the two, as ReBRAC's critic), then a linear output layer.

It behaves as an ordinary autograd module: any stack works on CPU and CUDA, gradients of
gradients included. What makes it fast is hidden behind that boundary:

* all weights, biases and LayerNorm affines of a network live in **one** flat tensor, so Adam,
  gradient zeroing and the Polyak target update are each one kernel over the whole network;
* a plain ReLU stack (the common case) runs as **one** autograd node whose backward is the
  textbook chain rule -- two matmuls and one fused ReLU-backward per layer -- written straight
  into the flat gradient buffer, skipping gradients nobody asked for (``detach_params=True``:
  dQ/da without dQ/dtheta). When a graph is being built through that backward
  (``create_graph=True``, EDAC's penalty) it is recomputed from ordinary autograd ops, so
  double backward works too;
* :meth:`EnsembleMLP.min` (``min_i f_i(x)``, SAC-N's and EDAC's actor step) backpropagates
  through each row's minimising member alone.

Any other stack (LayerNorm, other activations) runs on ordinary autograd ops over views of the
same flat tensor. ``tests/test_nn.py`` and ``tests/test_ensemble.py`` check forward and gradients
of every layer kind against ``E`` separate ``nn.Sequential`` networks with the same weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EnsembleMLP", "ACTIVATIONS"]


# Output widths up to this use the transposed matmul forms (see forward/backward).
_THIN = 8
# min's backward goes dense when one member minimises more than this fraction of rows.
_DENSE_ABOVE = 0.5


def _pieces(flat: torch.Tensor, lengths: Sequence[int]) -> Sequence[torch.Tensor]:
    """Consecutive pieces of ``flat`` of the given ``lengths`` (from its start). Where autograd
    records, one ``split``: each slice's backward would fill a zero tensor the size of the
    whole parameter, where a split's is one concatenation (a fifth of the dynamics model's
    training step went to those fills). Elsewhere, slices: views that may be written in place
    (a split's outputs may not)."""
    if flat.requires_grad and torch.is_grad_enabled():
        return flat.split([*lengths, flat.numel() - sum(lengths)])[: len(lengths)]
    starts = itertools.accumulate(lengths, initial=0)
    return [flat[start : start + n] for start, n in zip(starts, lengths, strict=False)]


def _layer_views(
    flat: torch.Tensor, sizes: Sequence[tuple[int, int]], ensemble: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Views ``(W [E, in, out], b [E, 1, out])`` of each layer inside the flat parameter."""
    pieces = _pieces(flat, [n for i, o in sizes for n in (ensemble * i * o, ensemble * o)])
    return [
        (pieces[2 * k].view(ensemble, i, o), pieces[2 * k + 1].view(ensemble, 1, o))
        for k, (i, o) in enumerate(sizes)
    ]


def _dropout_scale(h: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted-dropout factors for ``h``: 0 with probability ``p``, else ``1 / (1 - p)``.

    Drawing the randomness dominates an MC-dropout update on a CPU (one float per activation,
    ~60M/s). Four 16-bit uniform integers come out of each 64-bit draw instead, so ``p`` is
    applied at a resolution of 1/65536 (0.1 becomes 6554/65536 = 0.100006).
    """
    n = h.numel()
    bits = torch.randint(
        -(2**63), 2**63 - 1, ((n + 3) // 4,), generator=generator, device=h.device
    ).view(torch.int16)[:n]
    threshold = round(p * 65536) - 32768  # int16 values are uniform on [-32768, 32767]
    return (bits.view(h.shape) >= threshold).to(h.dtype).mul_(1.0 / (1.0 - p))


def _forward(
    x: torch.Tensor,
    layers: Sequence[tuple[torch.Tensor, ...]],
    dropout: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ensemble's output ``[E, B, out]`` and the activations the backward pass needs (the
    input broadcast to ``[E, B, in]``, then each hidden layer's post-ReLU output)."""
    e = layers[0][0].shape[0]
    h = x
    if x.dim() == 2:  # one input shared by every member
        h = x.unsqueeze(0) if e == 1 else x.unsqueeze(0).expand(e, *x.shape)
    saved = [h]
    last = len(layers) - 1
    for i, (w, b, w_t, b_t) in enumerate(layers):
        if i == last and w.shape[2] <= _THIN:
            # A thin output layer (Q-values, actions) is faster as out^T = W^T h^T: MKL's
            # batched kernel is slow for [B, in] @ [in, 1]-like shapes.
            h = torch.baddbmm(b_t, w_t, h.transpose(1, 2))
            h = h.transpose(1, 2)  # [E, out, B] -> [E, B, out] (a view)
        else:
            h = torch.baddbmm(b, h, w)  # [E, B, in] @ [E, in, out] + [E, 1, out]
        if i < last:
            h = h.relu_()
            if dropout > 0.0:
                # Inverted dropout: kept units scaled by 1 / (1 - p), so that the expected
                # activation is unchanged. A dropped unit is 0 like an inactive ReLU, so the
                # saved output still marks where the gradient flows.
                h = h.mul_(_dropout_scale(h, dropout, generator))
            saved.append(h)
    return h, saved


def _backward(
    g: torch.Tensor,
    acts: Sequence[torch.Tensor],
    layers: Sequence[tuple[torch.Tensor, ...]],
    dropout: float,
    grad_layers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    need_x: bool,
) -> torch.Tensor:
    """The chain rule from the output gradient ``g [E, B, out]`` down to the input: writes the
    weight gradients into ``grad_layers`` (if any) and returns the input gradient
    ``[E, B, in]`` (``g`` of the first layer's output when ``need_x`` is false)."""
    need_w = bool(grad_layers)
    for i in range(len(layers) - 1, -1, -1):
        w_t = layers[i][2]
        if i < len(layers) - 1:
            # ReLU backward: acts[i + 1] is this layer's post-ReLU output (post-dropout:
            # dropped units are 0 there too; kept ones carry the 1 / (1 - p) factor).
            # ``g`` is always a temporary of this loop here (the layer above made it), so
            # the mask is applied in place: at E = 50 a fresh [E, B, 256] output per layer
            # costs a cache-cold write of 13 MB.
            if dropout > 0.0:
                g = g.mul_(1.0 / (1.0 - dropout))
            g = torch.ops.aten.threshold_backward.grad_input(g, acts[i + 1], 0.0, grad_input=g)
        if need_w:
            gw, gb = grad_layers[i]
            if gw.shape[2] <= _THIN:
                # Thin layer: gW^T = g^T h ([E, out, B] @ [E, B, in]) is the fast form.
                torch.bmm(g.transpose(1, 2), acts[i], out=gw.transpose(1, 2))
            else:
                torch.bmm(acts[i].transpose(1, 2), g, out=gw)  # [E, in, B] @ [E, B, out]
            torch.sum(g, dim=1, keepdim=True, out=gb)
        if i > 0 or need_x:
            # [E, B, out] @ [E, out, in]. For a one-wide layer (Q-values) that is an outer
            # product, which MKL's batched kernel runs ~10x slower than a broadcast multiply.
            g = g * w_t if w_t.shape[1] == 1 else torch.bmm(g, w_t)
    return g


def _chain_rule(
    grad_out: torch.Tensor,
    acts: Sequence[torch.Tensor],
    layers: Sequence[tuple[torch.Tensor, ...]],
    sizes: Sequence[tuple[int, int]],
    ensemble: int,
    members: slice | None,
    dropout: float,
    flat_shape: torch.Size,
    need_w: bool,
    need_x: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """:func:`_backward` with its gradient buffer: ``(dL/dflat or None, dL/dx [E', B, in] or
    None)``. Members outside ``members`` get zero weight gradient."""
    grad_flat = None
    grad_layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    if need_w:
        if members is None:
            # Every element is written by _backward: no need to zero the buffer.
            grad_flat = grad_out.new_empty(flat_shape)
            grad_layers = _layer_views(grad_flat, sizes, ensemble)
        else:
            grad_flat = grad_out.new_zeros(flat_shape)
            full = _layer_views(grad_flat, sizes, ensemble)
            grad_layers = [(gw[members], gb[members]) for gw, gb in full]
    g = _backward(grad_out.contiguous(), acts, layers, dropout, grad_layers, need_x)
    return grad_flat, (g if need_x else None)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "silu": F.silu,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
}
"""Activations an :class:`EnsembleMLP` accepts by name (``swish`` is ``silu``)."""


def _norm_views(
    flat: torch.Tensor, sizes: Sequence[tuple[int, int]], ensemble: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Views ``(gamma [E, 1, h], beta [E, 1, h])`` of each hidden layer's LayerNorm affine,
    stored in the flat parameter after every linear layer's weights and biases."""
    start = sum(ensemble * (i * o + o) for i, o in sizes)
    pieces = _pieces(flat, [start, *(ensemble * h for _, h in sizes[:-1] for _ in range(2))])[1:]
    return [
        (pieces[2 * k].view(ensemble, 1, h), pieces[2 * k + 1].view(ensemble, 1, h))
        for k, (_, h) in enumerate(sizes[:-1])
    ]


def _generic_forward(
    x: torch.Tensor,
    flat: torch.Tensor,
    net: EnsembleMLP,
    members: slice | None,
    dropout: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Any layer stack from ordinary (twice differentiable) autograd ops over views of ``flat``:
    ``[B, in] or [E', B, in] -> [E', B, out]``."""
    linear = _layer_views(flat, net.sizes, net.ensemble)
    norms = _norm_views(flat, net.sizes, net.ensemble) if net.layer_norm else []
    if members is not None:
        linear = [(w[members], b[members]) for w, b in linear]
        norms = [(g[members], b[members]) for g, b in norms]
    e = linear[0][0].shape[0]
    h = x.unsqueeze(0).expand(e, *x.shape) if x.dim() == 2 else x
    act = ACTIVATIONS[net.activation]
    last = len(linear) - 1
    for i, (w, b) in enumerate(linear):
        h = torch.baddbmm(b, h, w)  # [E, B, in] @ [E, in, out] + [E, 1, out]
        if i == last:
            break
        if net.layer_norm and not net.norm_after_activation:
            h = F.layer_norm(h, h.shape[-1:]) * norms[i][0] + norms[i][1]
        h = act(h)
        if net.layer_norm and net.norm_after_activation:
            h = F.layer_norm(h, h.shape[-1:]) * norms[i][0] + norms[i][1]
        if dropout > 0.0:
            h = h * _dropout_scale(h, dropout, generator)
    return h


def _differentiable_chain_rule(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    flat: torch.Tensor,
    net: EnsembleMLP,
    members: slice | None,
    need_w: bool,
    saved: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dL/dx, dL/dflat or None)`` of the ReLU stack from ordinary ops on graph-connected
    tensors, for a backward that is itself differentiated (``create_graph=True``). The same
    chain rule as :func:`_backward`, without ``out=`` buffers or in-place masks; it calls no
    nested ``autograd.grad`` (which module hooks, e.g. ``FlopCounterMode``'s, cannot follow).

    ``dL/dx`` depends on the weights and the ReLU masks only, so without ``need_w`` the masks
    come from the forward pass's ``saved`` activations; the weight gradient needs activations
    that are functions of the weights, so with ``need_w`` the forward pass is rebuilt."""
    linear = _layer_views(flat, net.sizes, net.ensemble)
    if members is not None:
        linear = [(w[members], b[members]) for w, b in linear]
    acts = list(saved)
    if need_w:
        e = linear[0][0].shape[0]
        h = x.unsqueeze(0).expand(e, *x.shape) if x.dim() == 2 else x
        acts = [h]
        for w, b in linear[:-1]:
            h = torch.relu(torch.baddbmm(b, h, w))
            acts.append(h)
    g = grad_out
    grads: list[torch.Tensor] = []
    for i in range(len(linear) - 1, -1, -1):
        w = linear[i][0]
        if need_w:
            grads[:0] = [
                torch.bmm(acts[i].transpose(1, 2), g).flatten(),  # [E, in, B] @ [E, B, out]
                g.sum(1).flatten(),
            ]
        g = torch.bmm(g, w.transpose(1, 2))  # [E, B, out] @ [E, out, in]
        if i > 0:
            g = g * (acts[i] > 0)  # through the ReLU below this layer
    gx = g.sum(0) if x.dim() == 2 else g
    if not need_w:
        return gx, None
    if members is None:
        return gx, torch.cat(grads)
    full = torch.zeros_like(flat)
    for (w_all, b_all), gw, gb in zip(
        _layer_views(full, net.sizes, net.ensemble), grads[0::2], grads[1::2], strict=True
    ):
        w_all[members] = gw.view_as(w_all[members])
        b_all[members] = gb.view_as(b_all[members])
    return gx, full


class _EnsembleMLPFunction(torch.autograd.Function):
    """ReLU MLP over an ensemble, ``[E, B, in] or [B, in] -> [E, B, out]``, as one autograd node."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        flat: torch.Tensor,
        net: EnsembleMLP,
        layers: list[tuple[torch.Tensor, ...]],
        members: slice | None,
        dropout: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        # ``layers`` are views of ``flat`` (already restricted to ``members``); ``flat`` itself is
        # the autograd input, so gradients are accounted to the one flat parameter.
        h, saved = _forward(x, layers, dropout, generator)
        # ``flat`` is saved for autograd's version check (weights changed in place between
        # forward and backward fail as they would for nn.Linear) and, with ``x``, for the
        # recomputation a double backward needs.
        ctx.save_for_backward(flat, x, *saved)
        ctx.meta = (net, layers, members, dropout)
        ctx.flat_node = flat.grad_fn  # the view node EnsembleMLP.forward puts before the leaf
        return h

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        flat, x, *acts = ctx.saved_tensors
        net, layers, members, dropout = ctx.meta
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_w and ctx.flat_node is not None:
            # ``needs_input_grad`` only says the weights require grad; whether this backward
            # pass wants their gradient (``autograd.grad(q, actions)`` does not) is the engine's
            # to say, and it can say so for a non-leaf node only -- hence the view.
            need_w = bool(torch._C._will_engine_execute_node(ctx.flat_node))
        if torch.is_grad_enabled():
            # create_graph=True: the gradient must itself be differentiable, so it is taken
            # through the same function rebuilt from ordinary autograd ops.
            if dropout > 0.0:
                raise RuntimeError("double backward through a dropout EnsembleMLP is unsupported")
            return (
                *_differentiable_chain_rule(grad_out, x, flat, net, members, need_w, acts),
                *[None] * 5,
            )
        grad_flat, grad_x = _chain_rule(
            grad_out, acts, layers, net.sizes, net.ensemble, members, dropout, flat.shape,
            need_w, need_x,
        )  # fmt: skip
        if grad_x is not None and x.dim() == 2:
            grad_x = grad_x.sum(0)
        return grad_x, grad_flat, None, None, None, None, None


class _EnsembleMinFunction(torch.autograd.Function):
    """``min_e f_e(x)`` of a one-output ReLU ensemble, ``[B, in] or [E, B, in] -> [B]``,
    differentiable in ``x`` only, whose backward pass runs through each row's minimising member
    alone."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, flat: torch.Tensor, layers: list[tuple[torch.Tensor, ...]]
    ) -> torch.Tensor:
        out, saved = _forward(x, layers, 0.0, None)
        q, idx = out.squeeze(-1).min(0)  # [B], and the minimising member of each row
        ctx.save_for_backward(flat, idx, *saved)  # ``flat``: autograd's version check
        ctx.meta = (layers, x.dim() == 2)
        return q

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor) -> Any:
        _, idx, *acts = ctx.saved_tensors
        layers, shared_input = ctx.meta
        e, b, n_in = acts[0].shape
        counts = torch.bincount(idx, minlength=e)
        k = int(counts.max())
        if k > _DENSE_ABOVE * b:
            # Few members (or one member minimising most rows): the dense backward, with zero
            # gradient everywhere but at each row's minimiser, is as cheap.
            g = grad_q.new_zeros(e, b, 1)
            g[idx, torch.arange(b, device=idx.device), 0] = grad_q
            gx = _backward(g, acts, layers, 0.0, (), True)
            return (gx.sum(0) if shared_input else gx), None, None
        # Rows grouped by their minimiser into an [E, K] table (K = the largest group, the
        # padding points at row 0 with zero gradient): the backward pass then costs E * K rows
        # instead of E * B -- at E = 50, B = 256, K ~ 12 once the critics disagree (1/20).
        order = torch.argsort(idx, stable=True)
        member = idx[order]
        pos = torch.arange(b, device=idx.device) - (torch.cumsum(counts, 0) - counts)[member]
        rows = idx.new_zeros(e, k)
        rows[member, pos] = order
        g = grad_q.new_zeros(e, k, 1)
        g[member, pos, 0] = grad_q[order]
        # acts[0] (the input) feeds only weight gradients, which are not computed here.
        sub = [acts[0]] + [
            a.gather(1, rows.unsqueeze(-1).expand(e, k, a.shape[-1])) for a in acts[1:]
        ]
        gx = _backward(g, sub, layers, 0.0, (), True)[member, pos]  # [B, in], rows in `order`
        if shared_input:
            grad = gx.new_empty(b, n_in)
            grad[order] = gx
        else:
            grad = gx.new_zeros(e, b, n_in)
            grad[member, order] = gx
        return grad, None, None


def _as_slice(members: slice | int | None) -> slice | None:
    """``members`` as a slice of the ensemble axis (``None``: every member)."""
    if isinstance(members, int):
        return slice(members, members + 1)
    return None if members == slice(None) else members


class EnsembleMLP(nn.Module):
    """``ensemble`` MLPs ``in_dim -> hidden... -> out_dim`` with batched weights.

    Call it with ``x`` of shape ``[B, in_dim]`` (the same input for every member) or
    ``[E, B, in_dim]`` (one input per member); the output is ``[E, B, out_dim]``. Initialisation
    matches ``torch.nn.Linear`` (uniform in ``+-1/sqrt(fan_in)``) and ``torch.nn.LayerNorm``
    (``gamma = 1``, ``beta = 0``), member by member.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers.
        ensemble: number of independent members ``E``.
        layer_norm: a LayerNorm (with a learned affine per member) in every hidden layer.
        activation: the hidden layers' activation, a key of :data:`ACTIVATIONS`.
        norm_after_activation: ``Linear -> act -> LayerNorm`` (ReBRAC's critic) instead of
            ``Linear -> LayerNorm -> act``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256, 256),
        ensemble: int = 1,
        layer_norm: bool = False,
        activation: str = "relu",
        norm_after_activation: bool = False,
    ) -> None:
        super().__init__()
        if activation == "swish":
            activation = "silu"
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        dims = [in_dim, *hidden, out_dim]
        self.sizes: tuple[tuple[int, int], ...] = tuple(zip(dims[:-1], dims[1:], strict=True))
        self.ensemble = ensemble
        self.layer_norm = layer_norm
        self.activation = activation
        self.norm_after_activation = norm_after_activation
        total = sum(ensemble * (i * o + o) for i, o in self.sizes)
        if layer_norm:
            total += sum(2 * ensemble * h for h in hidden)
        self.flat = nn.Parameter(torch.empty(total))
        # The single-node kernels cover the plain ReLU stack; anything else is generic autograd.
        self.fused = activation == "relu" and not layer_norm
        self._view_cache: dict[Any, list[tuple[torch.Tensor, ...]]] = {}
        self.reset_parameters()

    def __getstate__(self) -> dict[str, Any]:
        # Copies (deepcopy, pickle) must not carry views of the original's storage.
        state = self.__dict__.copy()
        state["_view_cache"] = {}
        return state

    def reset_parameters(self) -> None:
        """``nn.Linear``'s / ``nn.LayerNorm``'s default initialisation, member by member."""
        with torch.no_grad():
            for w, b in self.layers():
                bound = 1.0 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound)
                b.uniform_(-bound, bound)
            for g, b in self.norms():
                g.fill_(1.0)
                b.zero_()

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(W [E, in, out], b [E, 1, out])`` per linear layer: views into :attr:`flat`."""
        return _layer_views(self.flat, self.sizes, self.ensemble)

    def norms(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(gamma [E, 1, h], beta [E, 1, h])`` per hidden LayerNorm (none without
        ``layer_norm``): views into :attr:`flat`."""
        return _norm_views(self.flat, self.sizes, self.ensemble) if self.layer_norm else []

    @torch.no_grad()
    def copy_members_from(self, other: EnsembleMLP, start: int = 0) -> None:
        """Copy every member of ``other`` (same layer sizes and options) into members ``start,
        start + 1, ...`` of this ensemble: how separately trained networks become one ensemble
        (Balanced Replay's pretrained CQL agents)."""
        same = (self.sizes, self.layer_norm, self.activation, self.norm_after_activation)
        theirs = (other.sizes, other.layer_norm, other.activation, other.norm_after_activation)
        if same != theirs:
            raise ValueError(f"copy_members_from: {other.extra_repr()} into {self.extra_repr()}")
        if not 0 <= start <= self.ensemble - other.ensemble:
            raise ValueError(
                f"copy_members_from: {other.ensemble} members do not fit at {start} of "
                f"{self.ensemble}"
            )
        end = start + other.ensemble
        for mine, src in zip(
            self.layers() + self.norms(), other.layers() + other.norms(), strict=True
        ):
            for a, b in zip(mine, src, strict=True):
                a[start:end] = b

    def forward(
        self,
        x: torch.Tensor,
        members: slice | int | None = None,
        detach_params: bool = False,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Evaluate the ensemble.

        Args:
            x: ``[B, in]`` shared input or ``[E', B, in]`` per-member input.
            members: evaluate only these members (a slice or one index; the output keeps the
                ensemble axis). ``None`` evaluates all.
            detach_params: treat the weights as constants (no weight gradients are computed):
                use it when only the gradient with respect to ``x`` is wanted.
            dropout: probability ``p`` of zeroing each hidden activation (after its activation),
                with the survivors scaled by ``1 / (1 - p)`` (inverted dropout, as
                ``F.dropout``): Monte-Carlo dropout for UWAC's uncertainty. Every row of every
                member gets its own mask, drawn from ``generator``. ``0`` is the plain network.
            generator: the random generator of the dropout masks.
        """
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        members = _as_slice(members)
        flat = self.flat.detach() if detach_params else self.flat
        if not self.fused:
            return _generic_forward(x, flat, self, members, dropout, generator)
        views = self._views(members)
        if not torch.is_grad_enabled() or not (x.requires_grad or flat.requires_grad):
            # Nothing here will be differentiated (target networks, acting): the kernels alone,
            # without an autograd node (its set-up costs about as much as a small layer).
            return _forward(x, views, dropout, generator)[0]
        if flat.requires_grad:
            flat = flat.view_as(flat)  # a non-leaf node the backward can ask the engine about
        out: torch.Tensor = _EnsembleMLPFunction.apply(
            x, flat, self, views, members, dropout, generator
        )
        return out

    def min(self, x: torch.Tensor) -> torch.Tensor:
        """``min`` over the members of a one-output ensemble: ``[B, in]`` or ``[E, B, in]`` ->
        ``[B]``, differentiable in ``x`` only (the weights are constants, as with
        ``detach_params=True``).

        The same values and input gradient as ``self(x, detach_params=True).amin(0)[:, 0]``
        (at an exact tie, ``amin`` splits the gradient between the tied members; this gives it
        to one). The gradient of a minimum is zero for every member but each row's minimiser,
        so for a ReLU stack the backward pass runs only through those: it is what SAC-N's and
        EDAC's actor step needs (dQ/da of ``min_i Q_i``), and at N = 50 it removes most of that
        step's backward pass.
        """
        if self.sizes[-1][1] != 1:
            raise ValueError(f"min needs a one-output ensemble, got {self.sizes[-1][1]} outputs")
        if not self.fused:
            return self(x, detach_params=True).amin(0)[:, 0]
        out: torch.Tensor = _EnsembleMinFunction.apply(x, self.flat.detach(), self._views(None))
        return out

    def _views(self, members: slice | None) -> list[tuple[torch.Tensor, ...]]:
        # Per-layer views are cached (building them costs a dozen small ops per call). They stay
        # valid while the parameter keeps its storage: in-place updates (optimisers,
        # load_state_dict) keep it; ``.to()`` / ``.double()`` replace it, which the key detects.
        key = (self.flat.data_ptr(), self.flat.dtype, members and (members.start, members.stop))
        views = self._view_cache.get(key)
        if views is None:
            with torch.no_grad():
                full = _layer_views(self.flat, self.sizes, self.ensemble)
                if members is not None:
                    full = [(w[members], b[members]) for w, b in full]
                # Transposed views too: the thin output layer and the backward pass use them.
                views = [(w, b, w.transpose(1, 2), b.transpose(1, 2)) for w, b in full]
            self._view_cache = {k: v for k, v in self._view_cache.items() if k[0] == key[0]}
            self._view_cache[key] = views
        return views

    def extra_repr(self) -> str:
        dims = [self.sizes[0][0]] + [o for _, o in self.sizes]
        extra = f", activation={self.activation}" if self.activation != "relu" else ""
        if self.layer_norm:
            extra += ", layer_norm=" + ("after" if self.norm_after_activation else "before")
        return f"ensemble={self.ensemble}, dims={dims}{extra}"
