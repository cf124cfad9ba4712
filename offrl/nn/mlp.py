"""A vectorised ensemble of MLPs with one flat parameter and a hand-written backward pass.

Every network in offrl is an :class:`EnsembleMLP`: ``E`` independent MLPs of the same shape whose
weights are batched (``W_l: [E, in, out]``) and evaluated with one batched matmul per layer, never
a Python loop over members. ``E = 1`` is an ordinary MLP; twin critics are ``E = 2``; SAC-N/EDAC
use ``E = 10 ... 500``.

Why a custom autograd function: on a CPU at the standard size (batch 256, hidden 256) an eager
PyTorch update spends as much time in per-op overhead (autograd bookkeeping, ReLU masks, bias
grads, one Adam kernel per tensor) as in matmuls. Here

* all weights and biases of a network live in **one** flat tensor, so Adam, gradient zeroing and
  the Polyak target update are each one kernel over the whole network;
* the whole MLP is **one** autograd node whose backward is the textbook chain rule -- two matmuls
  and one fused ReLU-backward per layer -- written straight into the flat gradient buffer;
* gradients nobody asked for are not computed: pass ``detach_params=True`` (the actor step of
  actor-critic methods needs dQ/da, never dQ/dtheta) and the weight gradients are skipped, and the
  first layer never computes an input gradient unless the input requires one.

The numbers are identical (to float rounding) to ``E`` separate ``nn.Sequential`` MLPs with the
same weights; ``tests/test_nn.py`` and ``tests/test_ensemble.py`` check forward and gradients
against that reference. An optional per-call dropout on the hidden layers (Monte-Carlo dropout,
UWAC) goes through the same backward; :meth:`EnsembleMLP.forward_autograd` is the plain-autograd
twin for gradients of gradients (EDAC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["EnsembleMLP"]


# Output widths up to this use the transposed matmul forms (see forward/backward).
_THIN = 8
# forward_min's backward goes dense when one member minimises more than this fraction of rows.
_DENSE_ABOVE = 0.5


def _layer_views(
    flat: torch.Tensor, sizes: Sequence[tuple[int, int]], ensemble: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Views ``(W [E, in, out], b [E, 1, out])`` of each layer inside the flat parameter."""
    views = []
    offset = 0
    for fan_in, fan_out in sizes:
        n_w = ensemble * fan_in * fan_out
        w = flat[offset : offset + n_w].view(ensemble, fan_in, fan_out)
        offset += n_w
        b = flat[offset : offset + ensemble * fan_out].view(ensemble, 1, fan_out)
        offset += ensemble * fan_out
        views.append((w, b))
    return views


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


class _EnsembleMLPFunction(torch.autograd.Function):
    """ReLU MLP over an ensemble, ``[E, B, in] or [B, in] -> [E, B, out]``, as one autograd node."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        flat: torch.Tensor,
        layers: list[tuple[torch.Tensor, ...]],
        sizes: tuple[tuple[int, int], ...],
        ensemble: int,
        members: slice | None,
        dropout: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        # ``layers`` are views of ``flat`` (already restricted to ``members``); ``flat`` itself is
        # the autograd input, so gradients are accounted to the one flat parameter.
        h, saved = _forward(x, layers, dropout, generator)
        shared_input = x.dim() == 2
        # ``flat`` is saved only so that autograd's version check catches weights changed in
        # place between forward and backward (as it would for nn.Linear).
        ctx.save_for_backward(flat, *saved)
        ctx.meta = (layers, sizes, ensemble, members, shared_input, flat.shape, dropout)
        return h

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        _, *acts = ctx.saved_tensors
        layers, sizes, ensemble, members, shared_input, flat_shape, dropout = ctx.meta
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_flat, grad_x = _chain_rule(
            grad_out, acts, layers, sizes, ensemble, members, dropout, flat_shape, need_w, need_x
        )
        if grad_x is not None and shared_input:
            grad_x = grad_x.sum(0)
        return grad_x, grad_flat, None, None, None, None, None, None


class _EnsembleMinFunction(torch.autograd.Function):
    """``min_e f_e(x)`` of a one-output ensemble, ``[B, in] or [E, B, in] -> [B]``, differentiable
    in ``x`` only, whose backward pass runs through each row's minimising member alone."""

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
    """``ensemble`` ReLU MLPs ``in_dim -> hidden... -> out_dim`` with batched weights.

    Call it with ``x`` of shape ``[B, in_dim]`` (the same input for every member) or
    ``[E, B, in_dim]`` (one input per member); the output is ``[E, B, out_dim]``. Initialisation
    matches ``torch.nn.Linear`` (uniform in ``+-1/sqrt(fan_in)``), member by member.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers.
        ensemble: number of independent members ``E``.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), ensemble: int = 1
    ) -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.sizes: tuple[tuple[int, int], ...] = tuple(zip(dims[:-1], dims[1:], strict=True))
        self.ensemble = ensemble
        total = sum(ensemble * (i * o + o) for i, o in self.sizes)
        self.flat = nn.Parameter(torch.empty(total))
        self._view_cache: dict[Any, list[tuple[torch.Tensor, ...]]] = {}
        self._grad_view_cache: tuple[int, list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self.reset_parameters()

    def __getstate__(self) -> dict[str, Any]:
        # Copies (deepcopy, pickle) must not carry views of the original's storage.
        state = self.__dict__.copy()
        state["_view_cache"] = {}
        state["_grad_view_cache"] = None
        return state

    def reset_parameters(self) -> None:
        """``nn.Linear``'s default initialisation for every layer of every member."""
        with torch.no_grad():
            for w, b in self.layers():
                bound = 1.0 / math.sqrt(w.shape[1])
                w.uniform_(-bound, bound)
                b.uniform_(-bound, bound)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(W [E, in, out], b [E, 1, out])`` per layer: views into :attr:`flat`."""
        return _layer_views(self.flat, self.sizes, self.ensemble)

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
            dropout: probability ``p`` of zeroing each hidden activation (after its ReLU), with
                the survivors scaled by ``1 / (1 - p)`` (inverted dropout, as ``F.dropout``):
                Monte-Carlo dropout for UWAC's uncertainty. Every row of every member gets its
                own mask, drawn from ``generator``. ``0`` (the default) is the plain network.
            generator: the random generator of the dropout masks.
        """
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        members = _as_slice(members)
        views = self._views(members)
        if not torch.is_grad_enabled() or not (
            x.requires_grad or (self.flat.requires_grad and not detach_params)
        ):
            # Nothing here will be differentiated (target networks, acting): the kernels alone,
            # without an autograd node (its set-up costs about as much as a small layer).
            return _forward(x, views, dropout, generator)[0]
        flat = self.flat.detach() if detach_params else self.flat
        out: torch.Tensor = _EnsembleMLPFunction.apply(
            x, flat, views, self.sizes, self.ensemble, members, dropout, generator
        )
        return out

    def forward_min(self, x: torch.Tensor) -> torch.Tensor:
        """``min`` over the members of a one-output ensemble: ``[B, in]`` or ``[E, B, in]`` ->
        ``[B]``, differentiable in ``x`` only (the weights are constants, as with
        ``detach_params=True``).

        The same values and input gradient as ``self(x, detach_params=True).amin(0)[:, 0]``
        (at an exact tie, ``amin`` splits the gradient between the tied members; this gives it
        to one), but cheaper: the gradient of a minimum is zero for every member but each
        row's minimiser, so the backward pass runs only through those. It is what SAC-N's and
        EDAC's actor step needs (dQ/da of ``min_i Q_i``), and at N = 50 it removes most of that
        step's backward pass.
        """
        if self.sizes[-1][1] != 1:
            raise ValueError(f"forward_min needs a one-output ensemble, got {self.sizes[-1][1]}")
        out: torch.Tensor = _EnsembleMinFunction.apply(x, self.flat.detach(), self._views(None))
        return out

    def forward_cached(
        self, x: torch.Tensor, members: slice | int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output ``[E', B, out]``, with no autograd graph, and the activations that
        :meth:`backward_cached` needs: for updates whose gradients are derived by hand (see
        :mod:`offrl.algos.td3bc_fused`). ``members`` as in :meth:`forward`."""
        if torch.is_grad_enabled():  # a hand-derived update runs under no_grad (once per step)
            with torch.no_grad():
                return self.forward_cached(x, members)
        return _forward(x, self._views(_as_slice(members)), 0.0, None)

    def backward_cached(
        self,
        grad_out: torch.Tensor,
        cache: list[torch.Tensor],
        members: slice | int | None = None,
        weights: bool = True,
        inputs: bool = False,
    ) -> torch.Tensor | None:
        """Backpropagate ``grad_out = dL/d(output) [E', B, out]`` through the activations of
        :meth:`forward_cached` (same ``members``), with no autograd graph.

        With ``weights``, ``dL/dflat`` becomes :attr:`flat`'s ``.grad``, ready for the
        optimiser's step: the gradient of this backward pass alone (as after
        ``zero_grad()`` and ``backward()``), written into the existing ``.grad`` when there is
        one; members outside ``members`` get zero. With ``inputs``, returns ``dL/dx [E', B,
        in]``.
        """
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.backward_cached(grad_out, cache, members, weights, inputs)
        members = _as_slice(members)
        grad_out = grad_out.contiguous()
        views = self._views(members)
        grad = self.flat.grad
        if (
            weights
            and members is None
            and grad is not None
            and grad.shape == self.flat.shape
            and grad.dtype == self.flat.dtype
            and grad.is_contiguous()
        ):
            # The common case, every step of a hand-derived update: _backward writes every
            # element of the buffer, so the last step's one is reused (no allocation, no views).
            g = _backward(grad_out, cache, views, 0.0, self._grad_layers(grad), inputs)
            return g if inputs else None
        grad_flat, grad_x = _chain_rule(
            grad_out, cache, views, self.sizes, self.ensemble, members, 0.0, self.flat.shape,
            weights, inputs,
        )  # fmt: skip
        if grad_flat is not None:
            self.flat.grad = grad_flat
        return grad_x

    def _grad_layers(self, grad: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Per-layer views of a gradient buffer, cached like _views (keyed by its storage).
        if self._grad_view_cache is None or self._grad_view_cache[0] != grad.data_ptr():
            self._grad_view_cache = (grad.data_ptr(), _layer_views(grad, self.sizes, self.ensemble))
        return self._grad_view_cache[1]

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

    def forward_autograd(self, x: torch.Tensor) -> torch.Tensor:
        """The same function built from ordinary autograd ops (supports double backward).

        Slower than :meth:`forward`; use it where gradients of gradients are needed (e.g. a
        penalty on dQ/da that must itself be differentiated).
        """
        h = x.unsqueeze(0).expand(self.ensemble, *x.shape) if x.dim() == 2 else x
        layers = self.layers()
        for i, (w, b) in enumerate(layers):
            h = torch.baddbmm(b, h, w)
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h

    def extra_repr(self) -> str:
        dims = [self.sizes[0][0]] + [o for _, o in self.sizes]
        return f"ensemble={self.ensemble}, dims={dims}"
