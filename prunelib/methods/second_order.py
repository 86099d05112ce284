"""Second-order pruning that updates the weights it keeps: OBS, WoodFisher, L-OBS.

Optimal Brain Surgeon (Hassibi & Stork, NeurIPS 1993).  With the loss modelled around
trained weights w by its quadratic part, ΔL(δw) = 1/2 δwᵀ H δw, removing weight q (the
constraint e_qᵀ(w + δw) = 0) at least cost gives

    ρ_q = w_q² / (2 [H⁻¹]_qq)                    (saliency, Eq. 5)
    δw  = -(w_q / [H⁻¹]_qq) H⁻¹ e_q              (update of every other weight, Eq. 4)

and removing a set Q at once (Hassibi & Stork's §4; WoodFisher, Singh & Alistarh 2020,
Eq. 12 "pruning multiple weights")

    ρ_Q = 1/2 w_Qᵀ ([H⁻¹]_QQ)⁻¹ w_Q
    δw  = -H⁻¹ E_Q ([H⁻¹]_QQ)⁻¹ w_Q.

After a removal the constrained problem's inverse is the Schur downdate

    H⁻¹ ← H⁻¹ - H⁻¹ E_Q ([H⁻¹]_QQ)⁻¹ E_Qᵀ H⁻¹

(rows and columns of Q become zero), so the next removal's ρ and δw are those of the
network with Q already removed: removing one at a time (``group = 1``) is the paper's
procedure, ``group = g`` removes the g lowest-saliency survivors per step.

The Hessian: the empirical Fisher F = λ I + (1/N) Σ_n g_n g_nᵀ over N gradients g_n
(mini-batch gradients of the training loss), whose inverse is built by the
Sherman–Morrison recursion of Hassibi & Stork (their Eq. 8, WoodFisher Eq. 8):

    F_0⁻¹ = I / λ,    F_n⁻¹ = F_{n-1}⁻¹ - (F_{n-1}⁻¹ g_n g_nᵀ F_{n-1}⁻¹) / (N + g_nᵀ F_{n-1}⁻¹ g_n).

(``fisher_inverse_blocks`` applies it m gradients at a time by the Woodbury identity:
the same inverse up to rounding.)

WoodFisher keeps F block-diagonal (blocks of ``block_size`` consecutive weights of one
tensor), so the recursion, the saliencies, the update and the downdate all stay within a
block; one block holding every weight is exactly OBS.

L-OBS (Dong, Chen & Pan, NeurIPS 2017) takes each layer's Hessian from its inputs:
the layer-wise error ‖W X - Ŵ X‖² has H = 2 X Xᵀ (X: the layer's inputs, columns per
example; a convolution's unfolded patches), the same for every output row.  We compute
it in the exact row-wise form of Optimal Brain Compression (Frantar & Alistarh, NeurIPS
2022, Alg. 1): per row, remove the weight of least w_q² / [H⁻¹]_qq, update the row by
δw = -(w_q / [H⁻¹]_qq) H⁻¹ e_q, downdate H⁻¹, repeat; the removal of a row's first c
weights gives that row's least-squares reconstruction on the kept support K,
w'_K = (H_KK)⁻¹ (H w)_K, which is how the updated rows are computed (``kept_support_rows``)
once the removal order (``obc_rows``) has given each row its count.

Exactness.  Every method keeps exactly ``masking.kept_count`` weights (over the network
or per tensor), ties at the cut drawn with the seed and recorded like every selection
(``masking.select_top``): OBS/WoodFisher steps select among survivors by saliency; L-OBS
ranks every (row, step) by the running maximum of its row's ΔL (non-decreasing along a
row, so selecting the smallest gives each row a count of removals, taken from the front
of its order).  Pruned weights are exactly zero in the updated weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prunelib.foundations.errors import PrunelibError
from prunelib.foundations.seeding import generator
from prunelib.methods import masking


class SecondOrderError(PrunelibError, ValueError):
    pass


# --- the empirical Fisher and its inverse ----------------------------------------------

def flat_gradients(model: nn.Module, params: dict, batches):
    """One flat gradient of the mean cross-entropy loss per batch (the prunable weights
    in ``params`` order, float64): WoodFisher's ``fisher_mini_bsz`` examples per gradient,
    ``fisher_subsample_size`` gradients (here ``batch_size`` and ``num_batches``)."""
    names = list(params)
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        yield torch.cat([g.detach().reshape(-1).to(torch.float64) for g in grads])


def blocks_of(sizes: list[int], block_size: int | None) -> list[tuple[int, int]]:
    """(start, stop) of each block of the flat weight vector: consecutive runs of at most
    ``block_size`` weights within one tensor (None: one block of everything, OBS)."""
    if block_size is None:
        return [(0, sum(sizes))]
    out, start = [], 0
    for n in sizes:
        for a in range(0, n, block_size):
            out.append((start + a, start + min(n, a + block_size)))
        start += n
    return out


# Gradients applied per Woodbury step in ``fisher_inverse_blocks``.  Per gradient it costs
# about 2 s² + 1.5 s m multiply-adds per block (F⁻¹U and the update; Uᵀ F⁻¹ U and the
# triangular solve), in products that run faster the wider U is: on LeNet-300-100 (blocks of
# 128, N = 256, 1 thread) m = 1, 8, 16, 32, 64, 128 took 25.1, 7.3, 4.5, 3.0, 3.5, 5.9 s
# (benchmarks/woodfisher_inverse.py --num-gradients 256 --chunks 1 8 16 32 64 128 --no-reference).
FISHER_CHUNK = 32


def fisher_inverse_blocks(grads, n_grads: int, blocks: list[tuple[int, int]], damping: float,
                          chunk: int = FISHER_CHUNK) -> list[torch.Tensor]:
    """F_B⁻¹ of each block B, with F = λ I + (1/N) Σ_n g_n g_nᵀ; float64.

    This is the Sherman–Morrison recursion of the module docstring (Hassibi & Stork; the
    WoodFisher code, IST-DASLab/WoodFisher, applies it one gradient at a time) applied
    ``chunk`` = m gradients at a time by the Woodbury identity, which equals m successive
    rank-one steps in exact arithmetic (so the result equals the recursion up to rounding):
    with U = [g_1 … g_m] (the block's rows of the chunk's gradients, s × m),

        F⁻¹ ← F⁻¹ - (F⁻¹U) (N I_m + Uᵀ F⁻¹ U)⁻¹ (F⁻¹U)ᵀ.

    Why: a rank-one step reads and writes every block inverse for 2 s² flops per block
    (memory-bound: LeNet-300-100's 2,080 blocks of 128² are 272 MB per gradient); a
    rank-m step does it once per m gradients as matrix products (BLAS-3).  The m × m
    matrix M = N I + Uᵀ F⁻¹ U is SPD (≥ N I), so with its Cholesky factor L (M = L Lᵀ)
    and V = L⁻¹ (F⁻¹U)ᵀ the update is F⁻¹ -= Vᵀ V, symmetric, written into F⁻¹ in place
    (``baddbmm_``: no s × s temporary).  Blocks of one size are updated together.
    ``grads`` is an iterator of flat gradients; at most ``chunk`` of them are held (as
    their block entries).  Returns one [s, s] tensor per block, views into one tensor per
    block size (independent: the blocks do not overlap)."""
    if damping <= 0:
        raise SecondOrderError(f"damping = {damping} is not allowed; allowed: a number > 0")
    if chunk < 1:
        raise SecondOrderError(f"chunk = {chunk} is not allowed; allowed: an integer >= 1")
    by_size: dict[int, list[int]] = {}
    for i, (a, b) in enumerate(blocks):
        by_size.setdefault(b - a, []).append(i)
    inv = {s: torch.eye(s, dtype=torch.float64).repeat(len(ix), 1, 1) / damping for s, ix in by_size.items()}
    index = {s: torch.stack([torch.arange(blocks[i][0], blocks[i][1]) for i in ix]) for s, ix in by_size.items()}
    device = next(iter(inv.values())).device if inv else torch.device("cpu")
    chunk = max(1, min(chunk, n_grads))
    # the chunk's gradients, gathered per block size as they arrive: row j of buf[s] holds
    # gradient j's entries of every block of size s, block after block ([m, k s])
    flat = {s: ix.reshape(-1).to(device) for s, ix in index.items()}
    buf = {s: torch.empty(chunk, ix.numel(), dtype=torch.float64, device=device) for s, ix in index.items()}

    def apply(m: int) -> None:
        for s, F_inv in inv.items():
            k = F_inv.shape[0]
            Ut = buf[s][:m].view(m, k, s).transpose(0, 1)                   # Uᵀ per block [k, m, s]
            Yt = torch.bmm(Ut, F_inv)                                       # Uᵀ F⁻¹ = (F⁻¹U)ᵀ (F⁻¹ symmetric)
            M = torch.baddbmm(torch.eye(m, dtype=torch.float64, device=device).mul_(n_grads).expand(k, m, m),
                              Ut, Yt.transpose(1, 2))                       # N I + Uᵀ F⁻¹ U
            L = torch.linalg.cholesky(M)                                    # = L Lᵀ
            V = torch.linalg.solve_triangular(L, Yt, upper=False)           # L⁻¹ (F⁻¹U)ᵀ [k, m, s]
            F_inv.baddbmm_(V.transpose(1, 2), V, alpha=-1.0)                # F⁻¹ -= Vᵀ V

    seen, j = 0, 0
    for g in grads:
        seen += 1
        g = g.to(device, torch.float64)
        for s in buf:
            torch.index_select(g, 0, flat[s], out=buf[s][j])
        j += 1
        if j == chunk:
            apply(j)
            j = 0
    if j:
        apply(j)
    if seen != n_grads:
        raise SecondOrderError(f"expected {n_grads} gradients for the Fisher, got {seen}")
    out: list[torch.Tensor] = [None] * len(blocks)  # type: ignore[list-item]
    for s, ix in by_size.items():
        for j, i in enumerate(ix):
            out[i] = inv[s][j]  # (views: disjoint blocks of one tensor, no second copy)
    return out


# --- OBS in blocks -----------------------------------------------------------------------

def obs_remove(w: torch.Tensor, hinv: torch.Tensor, q: torch.Tensor, joint: bool = True,
               downdate: bool = True) -> torch.Tensor:
    """Remove the weights ``q`` (indices into ``w``) by OBS: ``w`` updated in place by
    δw = -H⁻¹ E_Q ([H⁻¹]_QQ)⁻¹ w_Q (``joint``; one index: -(w_q / [H⁻¹]_qq) H⁻¹ e_q) or by
    the sum of the single-weight updates (not ``joint``: the WoodFisher code's one-shot
    update), the removed entries set to exactly 0; ``hinv`` downdated in place (Schur
    complement, rows and columns of Q zero).  Returns δw (before zeroing)."""
    cols = hinv[:, q]                                  # H⁻¹ E_Q
    if joint:
        coef = torch.linalg.solve(hinv[q][:, q], w[q])  # ([H⁻¹]_QQ)⁻¹ w_Q
    else:
        coef = w[q] / hinv[q, q]
    delta = -(cols @ coef)
    w += delta
    w[q] = 0.0
    if not downdate:  # (the last step: nothing reads the inverse again)
        return delta
    block = hinv[q][:, q]
    hinv -= cols @ torch.linalg.solve(block, cols.T)
    hinv[q, :] = 0.0
    hinv[:, q] = 0.0
    return delta


def saliency(w: torch.Tensor, hinv_diag: torch.Tensor) -> torch.Tensor:
    """ρ_q = w_q² / (2 [H⁻¹]_qq)."""
    return w * w / (2.0 * hinv_diag)


def obs_prune_blocks(w_flat: torch.Tensor, hinvs: list[torch.Tensor], blocks: list[tuple[int, int]], keep: int,
                     group: int, seed: int, joint: bool = True, alive: torch.Tensor | None = None,
                     stream: str = "obs"):
    """Remove weights from ``w_flat`` (float64, updated in place) until exactly ``keep``
    survive, ``group`` per step (0: all in one step), each step the lowest OBS saliencies
    among the survivors of every block (global), ties drawn from ``{stream}:{step}`` of
    ``seed``; ``hinvs`` (each block's H⁻¹) are downdated in place.  ``alive``: the
    survivors to start from (an IMP chain's earlier rounds; their zero weights are
    constrained first, which moves nothing), default all.

    Returns (alive: bool [n], (the last step's survivors' flat indices, its
    ``masking.Selection``: the tie record at the cut), ranking: float64 [n], higher = kept
    longer: a removed weight -(its step), a kept one 1 + its saliency with the last step's
    inverse (the last step does not downdate: nothing reads the inverse after it))."""
    n = w_flat.numel()
    alive = torch.ones(n, dtype=torch.bool) if alive is None else alive.clone()
    block_of = torch.empty(n, dtype=torch.long)
    diag = torch.empty(n, dtype=torch.float64)
    for i, (a, b) in enumerate(blocks):
        block_of[a:b] = i
        dead = (~alive[a:b]).nonzero().squeeze(1)
        if dead.numel():
            obs_remove(w_flat[a:b], hinvs[i], dead, joint=True)
        diag[a:b] = hinvs[i].diagonal()
    n_alive = int(alive.sum())
    if not 0 <= keep <= n_alive:
        raise SecondOrderError(f"cannot keep {keep} weights: {n_alive} survive")
    if group < 0:
        raise SecondOrderError(f"group = {group} is not allowed; allowed: an integer >= 0 (0: all at once)")
    removed_step = torch.zeros(n, dtype=torch.float64)
    step, tie = 0, None
    while n_alive > keep:
        step += 1
        idx = alive.nonzero().squeeze(1)
        sal = saliency(w_flat[idx], diag[idx])
        g = n_alive - keep if group == 0 else min(group, n_alive - keep)
        # the g lowest saliencies: keep the (n_alive - g) highest, exactly, ties seeded
        sel = masking.select_top(sal, n_alive - g, generator(seed, f"{stream}:{step}"))
        tie = (idx, sel)
        gone = idx[~sel.keep]
        removed_step[gone] = step
        last = n_alive - gone.numel() == keep
        gone = gone.sort().values  # (ascending: each block's removals are one run)
        ids, counts = torch.unique_consecutive(block_of[gone], return_counts=True)
        for i, part in zip(ids.tolist(), gone.split(counts.tolist())):
            a, b = blocks[i]
            obs_remove(w_flat[a:b], hinvs[i], part - a, joint=joint, downdate=not last)
            if not last:
                diag[a:b] = hinvs[i].diagonal()
        alive[gone] = False
        n_alive -= gone.numel()
    kept_sal = saliency(w_flat, torch.where(alive, diag, torch.ones_like(diag)))
    ranking = torch.where(alive, 1.0 + kept_sal, -removed_step)
    return alive, tie, ranking


# --- L-OBS / OBC: row-wise, from the layer inputs ---------------------------------------

def layer_inputs(model: nn.Module, modules: dict[str, nn.Module], batches) -> dict[str, torch.Tensor]:
    """H = 2 X Xᵀ / N for each named Linear or Conv2d module, from its inputs over the
    scoring batches (a convolution's unfolded patches: X has one column per patch),
    float64."""
    hs = {n: None for n in modules}
    count = {n: 0 for n in modules}

    def hook(name, mod):
        def fn(_m, inp, _out):
            x = inp[0].detach()
            if isinstance(mod, nn.Conv2d):
                x = F.unfold(x, mod.kernel_size, dilation=mod.dilation, padding=mod.padding, stride=mod.stride)
                x = x.transpose(1, 2).reshape(-1, x.shape[1])      # [N * patches, C k k]
            else:
                x = x.reshape(-1, x.shape[-1])
            x = x.to(torch.float64)
            h = 2.0 * x.T @ x
            hs[name] = h if hs[name] is None else hs[name] + h
            count[name] += x.shape[0]
        return fn

    handles = [m.register_forward_hook(hook(n, m)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            for x, _ in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: hs[n] / max(count[n], 1) for n in modules}


#: Bytes of H⁻¹ that one block of rows updates per OBC step.  Each step reads and writes
#: all of it (a rank-one downdate), so the loop is memory-bound: a block that fits the
#: last-level cache, and whose per-step temporary stays below glibc's mmap threshold (not
#: page-faulted in afresh every step), costs several times less per number than the
#: 315 MB of 64 rows of LeNet-300-100's fc1 (measured: 4 and 8 MiB alike, 64 MiB ~3x
#: slower per number).
_STEP_BYTES = 8 << 20
#: Rows whose H⁻¹ are held at once: at most this many float64 numbers at full width
#: (128 MiB; with the next phase's compacted copy, at most 1 + f² = 1.81 times that).
_CHUNK_NUMBERS = 1 << 24
#: A block's H⁻¹ is compacted to its alive columns once they fall to this fraction of its
#: width.  A row then costs Σ m² = c³ / (1 + f + f²) numbers per pass over its c steps
#: (no compaction: c³; every step: c³/3): 0.43 c³ at f = 3/4, 0.37 c³ at f = 0.9, plus one
#: gather of f² m² numbers per (1 - f) m steps of m² each, under 1/10 of the phase's work
#: for m >= 100.  Measured (best of 4, 1 thread, OBC pass on 8 x 784 / 32 x 400 / 64 x 150):
#: f = 0.5: 3.8 / 4.1 / 0.54 s, 0.75: 2.5 / 2.8 / 0.37 s, 0.9: 1.6 / 2.2 / 0.35 s,
#: 0.95: 1.9 / 2.1 / 0.45 s: the smaller matrices also stay in cache sooner.
_SHRINK = 0.9
_REMOVED_TWICE = ("lobs: an OBC step picked a weight already removed (every saliency left in its row is "
                  "+inf: non-finite weights or inverse Hessian; raise score.per_method.lobs.damping)")


def _obc_phase(W: torch.Tensor, Hi: torch.Tensor, steps: int):
    """``steps`` OBC removals on every row of a block, in place: W [k, m] (the rows' alive
    weights), Hi [k, m, m] (their H⁻¹ on those columns).  Returns (q [k, steps]: the
    removed column per step, in the block's columns; w_q and [H⁻¹]_qq per step; dead [k, m])."""
    k, m = W.shape
    ar = torch.arange(k)
    dead = torch.zeros(k, m, dtype=torch.bool)
    qs = torch.empty(k, steps, dtype=torch.long)
    wqs = torch.empty(k, steps, dtype=torch.float64)
    dqs = torch.empty(k, steps, dtype=torch.float64)
    for s in range(steps):
        d = Hi.diagonal(dim1=1, dim2=2)
        sal = (W * W) / d.clamp_min(1e-300)
        sal = sal.masked_fill(dead, math.inf)
        q = torch.argmin(sal, dim=1)                  # first minimum: deterministic
        dq = d[ar, q]
        wq = W[ar, q]
        col = Hi[ar, :, q]                            # H⁻¹ e_q per row [k, m]
        W -= (wq / dq).unsqueeze(1) * col
        W[ar, q] = 0.0
        # the downdate H⁻¹ ← H⁻¹ - H⁻¹ e_q e_qᵀ H⁻¹ / [H⁻¹]_qq, as a product then a
        # difference (a fused multiply-add would round differently)
        Hi -= col.unsqueeze(2) * (col / dq.unsqueeze(1)).unsqueeze(1)
        dead[ar, q] = True
        qs[:, s] = q
        wqs[:, s] = wq
        dqs[:, s] = dq
    return qs, wqs, dqs, dead


def obc_rows(w: torch.Tensor, h: torch.Tensor, chunk: int | None = None):
    """OBC's row-wise OBS on W [rows, cols] with the shared Hessian H [cols, cols]: every
    row pruned to empty in OBS order, one weight per step (Frantar & Alistarh 2022,
    Alg. 1): remove q = argmin_alive w_q² / [H⁻¹]_qq (ties: the lowest column), update the
    row by δw = -(w_q / [H⁻¹]_qq) H⁻¹ e_q, downdate H⁻¹ ← H⁻¹ - H⁻¹ e_q e_qᵀ H⁻¹ / [H⁻¹]_qq.
    Returns (order [rows, cols]: the column removed at each step, ΔL [rows, cols]: the
    layer loss ½ δwᵀ H δw added by each removal, w_q² / (2 [H⁻¹]_qq), with H = 2XXᵀ as
    given).

    Compaction (exact).  A step reads the saliencies of the alive columns (removed ones
    are masked) and updates every alive entry from alive entries only: w_i -= (w_q /
    [H⁻¹]_qq) H⁻¹_iq and H⁻¹_ij -= H⁻¹_iq · (H⁻¹_jq / [H⁻¹]_qq), with i, j and q alive.  So
    the alive entries of w and the alive × alive block of H⁻¹ evolve as if the removed
    rows and columns were not there (after its downdate column q is exactly zero, row q
    holds rounding residues, and neither is read again).  Once a row's alive columns are
    a fraction ``_SHRINK`` of its matrix, the alive sub-matrix is gathered and the steps
    go on with it: the same elementwise operations (a product, then a difference, never
    fused) on the same numbers, hence the same order and ΔL bit for bit.  Every row
    removes one weight per step, so a block's rows have equally many alive columns and
    compact together; the alive columns stay in ascending original order, so argmin's
    first minimum (ties: the lowest original column) is the same column as without
    compaction.  (Where every alive saliency is +inf, the uncompacted loop's first
    minimum could be a removed column; this one stops with an error.)  A row costs ~0.37
    cols³ numbers read and written instead of cols³.  ``chunk``: rows whose H⁻¹ are held
    at once (default: ``_CHUNK_NUMBERS`` numbers); each phase's steps run on blocks of
    ``_STEP_BYTES``."""
    rows, cols = w.shape
    if chunk is None:
        chunk = max(1, min(64, _CHUNK_NUMBERS // (cols * cols)))
    hinv0 = torch.linalg.inv(h)
    order = torch.empty(rows, cols, dtype=torch.long)
    losses = torch.empty(rows, cols, dtype=torch.float64)
    for r0 in range(0, rows, chunk):
        W = w[r0:r0 + chunk].to(torch.float64).clone()
        k = W.shape[0]
        pos = torch.arange(cols).expand(k, cols)       # each column's original index
        Hi = None                                      # (the first phase clones H⁻¹ per block)
        m, s0 = cols, 0
        while m:
            nxt = int(_SHRINK * m)                     # alive columns after this phase
            steps = m - nxt
            block = max(1, _STEP_BYTES // (8 * m * m))
            # the next phase's matrices, filled block by block: this phase's and the next
            # are all that is held (at most (1 + f²) · chunk · cols² numbers)
            W2 = torch.empty(k, nxt, dtype=torch.float64)
            Hi2 = torch.empty(k, nxt, nxt, dtype=torch.float64)
            pos2 = torch.empty(k, nxt, dtype=torch.long)
            for b0 in range(0, k, block):
                b1 = min(k, b0 + block)
                Wb = W[b0:b1]
                Hb = hinv0.expand(b1 - b0, cols, cols).clone() if Hi is None else Hi[b0:b1]
                q, wq, dq, dead = _obc_phase(Wb, Hb, steps)
                order[r0 + b0:r0 + b1, s0:s0 + steps] = pos[b0:b1].gather(1, q)
                losses[r0 + b0:r0 + b1, s0:s0 + steps] = wq * wq / (2.0 * dq)
                if nxt:
                    alive = (~dead).nonzero()[:, 1]    # row-major: ascending within a row
                    if alive.numel() != (b1 - b0) * nxt:
                        raise SecondOrderError(_REMOVED_TWICE)
                    alive = alive.view(b1 - b0, nxt)
                    ar = torch.arange(b1 - b0).view(-1, 1, 1)
                    W2[b0:b1] = Wb.gather(1, alive)
                    Hi2[b0:b1] = Hb[ar, alive.unsqueeze(2), alive.unsqueeze(1)]
                    pos2[b0:b1] = pos[b0:b1].gather(1, alive)
                del Hb
            W, Hi, pos = W2, Hi2, pos2
            m, s0 = nxt, s0 + steps
    if not torch.equal(order.sort(1).values, torch.arange(cols).expand(rows, cols)):
        raise SecondOrderError(_REMOVED_TWICE)
    return order, losses


def kept_support_rows(w: torch.Tensor, h: torch.Tensor, kept: torch.Tensor, budget: int = 1 << 23) -> torch.Tensor:
    """Each row of W [rows, cols] updated as OBS's removals of its weights outside
    ``kept`` [rows, cols] leave it: the least-squares reconstruction on the kept support
    K (S: the removed weights),

        w'_K = (H_KK)⁻¹ (H w)_K,    w'_S = 0,

    the minimiser of ½ (w' - w)ᵀ H (w' - w) subject to w'_S = 0 (its gradient on K:
    H_KK (w'_K - w_K) - H_KS w_S = 0).  Sequential OBS removals compose to it: each
    removal minimises ½ δᵀ H δ from the previous solution subject to the earlier
    constraints and one more (the downdated H⁻¹ is that constrained problem's), and at
    the previous solution the quadratic's gradient is orthogonal to every step that keeps
    the earlier constraints, so the step lands on the optimum with all of them (the
    joint-removal identity δw = -H⁻¹ E_S ([H⁻¹]_SS)⁻¹ w_S, WoodFisher Eq. 12, is the same
    point).  So the order of removal does not matter, only the set.  Solved by Cholesky (H_KK is a
    principal block of an SPD matrix), rows with equal |K| batched; where |S| < |K| the
    same point is taken from the smaller system, w' = w - H⁻¹ E_S ([H⁻¹]_SS)⁻¹ w_S
    (nothing removed: w unchanged).  Removed weights are exactly 0.  float64;
    ``budget``: numbers per batch of gathered systems."""
    rows, cols = w.shape
    w = w.to(torch.float64)
    out = torch.zeros(rows, cols, dtype=torch.float64)
    n_kept = kept.sum(1)
    hw = hinv = None
    for size in torch.unique(n_kept).tolist():
        rs = (n_kept == size).nonzero().squeeze(1)
        n_rm = cols - size
        if size == 0:
            continue
        if n_rm == 0:
            out[rs] = w[rs]
            continue
        on_kept = size <= n_rm
        m = size if on_kept else n_rm
        if on_kept and hw is None:
            hw = w @ h.T                              # row r: (H w_r)ᵀ
        if not on_kept and hinv is None:
            hinv = torch.linalg.inv(h)
        step = max(1, budget // (m * m))
        for g0 in range(0, rs.numel(), step):
            g = rs[g0:g0 + step]
            idx = (kept[g] if on_kept else ~kept[g]).nonzero()[:, 1].view(-1, m)
            mat = h if on_kept else hinv
            a = mat[idx.unsqueeze(2), idx.unsqueeze(1)]                  # [g, m, m]
            rhs = (hw[g] if on_kept else w[g]).gather(1, idx).unsqueeze(2)
            chol, info = torch.linalg.cholesky_ex(a)
            x = torch.cholesky_solve(rhs, chol)
            bad = info.ne(0)
            if bad.any():  # numerically not positive definite (tiny damping): a plain solve
                x[bad] = torch.linalg.solve(a[bad], rhs[bad])
            if on_kept:
                out[g] = torch.zeros(g.numel(), cols, dtype=torch.float64).scatter_(1, idx, x.squeeze(2))
            else:
                new = w[g] - torch.bmm(x.transpose(1, 2), hinv.T[idx]).squeeze(1)
                out[g] = new.masked_fill_(~kept[g], 0.0)
    return out


def damped_hessian(h: torch.Tensor, damping: float) -> torch.Tensor:
    """H + damping · mean diag(H) · I (a copy): OBC's and GPTQ's damping; dead inputs
    (diag 0) get it too, so H is invertible."""
    eye = torch.eye(h.shape[0], dtype=torch.float64, device=h.device)
    return h + damping * float(h.diagonal().mean().clamp_min(1e-12)) * eye


def lobs_layer(w: torch.Tensor, h: torch.Tensor, keep: int, seed: int, stream: str, damping: float):
    """One layer by L-OBS in OBC's row-wise form: keep exactly ``keep`` of W's weights.

    H is damped by ``damping`` · mean diag(H) (OBC and GPTQ add such a term; dead inputs,
    diag 0, get it too).  Each row's removal order and ΔL per step come from ``obc_rows``;
    the score of a row's j-th removal is the running max of its ΔL up to j (non-decreasing
    along the row), and the (rows·cols - keep) smallest scores over the layer decide how
    many each row removes (ties drawn with the seed, recorded).  A row that removes its
    first c weights in OBS order ends, by OBS's sequential updates, at the least-squares
    reconstruction on the remaining support; it is computed in that closed form
    (``kept_support_rows``) instead of replaying c removals.  Returns (mask, updated
    weights, the selection (tie record; its threshold is minus the score at the cut), per
    weight the score of its removal step: higher = removed later)."""
    rows = w.shape[0]
    w2 = w.reshape(rows, -1)
    cols = w2.shape[1]
    h = damped_hessian(h, damping)
    order, losses = obc_rows(w2, h)
    score = torch.cummax(losses, dim=1).values               # [rows, cols], non-decreasing per row
    n_remove = rows * cols - keep
    sel = masking.select_top(-score.reshape(-1), n_remove, generator(seed, stream))
    counts = sel.keep.view(rows, cols).sum(1)
    # the weight removed at step j of its row is kept when j >= counts[row]
    mask = torch.empty(rows, cols, dtype=torch.bool).scatter_(1, order, torch.arange(cols) >= counts.unsqueeze(1))
    new = kept_support_rows(w2, h, mask)
    per_weight = torch.empty(rows, cols, dtype=torch.float64).scatter_(1, order, score)
    return mask.view_as(w), new.view_as(w).to(w.dtype), sel, per_weight.view_as(w)
