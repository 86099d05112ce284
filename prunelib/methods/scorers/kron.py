"""Kron-OBD and Kron-OBS: filter (neuron) importance under a Kronecker-factored Fisher
(Wang, Zhang, Wang, Luo & Grosse, "EigenDamage: Structured Pruning in the
Kronecker-Factored Eigenbasis", ICML 2019, Sec. 3, the two baselines of the paper).

With each layer's K-FAC factors F_W ~= S (x) A (prunelib/methods/kfac.py) and w_j the j-th
row of the layer's weight matrix [out, in*kh*kw (+1 bias)] (a filter, or a unit of a
Linear), removing filter j costs

    Kron-OBD:  dL_j = 1/2 * S_jj * w_j^T A w_j                 (dW_j = -w_j, rest unchanged)
    Kron-OBS:  dL_j = 1/2 * w_j^T A w_j / [S^-1]_jj           (paper, Eq. 10)
               dW   = - S^-1 e_j w_j^T / [S^-1]_jj               (every row of the layer moves)

**Where the authors' code differs from the paper.**  ``pruner/kfac_OBD_F2.py`` and
``pruner/kfac_OBS_F2.py`` compute the row term as ``sum(w**2 @ A, 1)`` =
sum_{k,l} w_jk^2 A_kl, not the quadratic form w_j^T A w_j = sum_{k,l} w_jk A_kl w_jl.
The two agree only for a diagonal A.  ``form: paper`` (default) uses the quadratic form
(it is the loss change the paper derives); ``form: code`` reproduces the released code.
Both drop the 1/2 (a common factor).  Everything else follows the code: the bias is the
homogeneous column of w_j (``fetch_mat_weights``); S^-1 = Q_S diag(1/(d_S + 1e-10)) Q_S^T
with eigenvalues <= 1e-15 set to 0 (``_update_inv``/``_get_unit_importance``); no per-layer
normalisation (``normalize: false`` in every config of theirs); a global threshold over all
layers (here: the global order of prunelib/methods/structured.py, which meets the target
count; the authors take a percentile of the filter count).  The Kron-OBS update of
several pruned filters is the sum of their single-filter updates (``_do_surgery``:
``-S^-1[:, pruned] diag(1/[S^-1]_jj) W[pruned]``), applied to the bias column too.

**How the scores enter the structured machinery.**  ``structured.filter_scores`` sums each
filter's per-weight scores; the scorer puts dL_j in the first weight of row j and zero in
the others, so that the summed score is dL_j exactly (a sum with zeros is exact).  Other
prunable tensors (those that produce no prunable group: the classifier, a ResNet's
residual convolutions) score zero.
"""

from __future__ import annotations

import torch
from torch import nn

from prunelib.methods import kfac
from prunelib.methods.scorers.base import Scorer

FORMS = ("paper", "code")
#: The authors' eigenvalue floor and damping of S^-1 (kfac_full_pruner._update_inv / _get_unit_importance).
EIG_FLOOR = 1e-15
INV_EPS = 1e-10


def s_inverse(S: torch.Tensor) -> torch.Tensor:
    """S^-1 as the authors take it: eigenvalues <= 1e-15 set to 0, then 1/(d + 1e-10)."""
    d, q = torch.linalg.eigh(S.double())
    d = d * (d > EIG_FLOOR)
    return (q * (1.0 / (d + INV_EPS))) @ q.t()


def row_terms(w: torch.Tensor, A: torch.Tensor, form: str) -> torch.Tensor:
    """w_j^T A w_j per row (``paper``) or the code's sum_k (w^2 A)_jk (``code``)."""
    w, A = w.double(), A.double()
    if form == "paper":
        return ((w @ A) * w).sum(1)
    return (w ** 2 @ A).sum(1)


def kron_importance(w: torch.Tensor, f: kfac.Factors, method: str, form: str = "paper") -> torch.Tensor:
    """dL_j (without the common 1/2) of each row of ``w`` (``matrix_weight`` of the layer)."""
    rows = row_terms(w, f.A, form)
    if method == "kron_obd":
        return rows * torch.diagonal(f.S).double()
    return rows / torch.diagonal(s_inverse(f.S))


def kron_obs_update(w: torch.Tensor, s_inv: torch.Tensor, pruned) -> torch.Tensor:
    """The Kron-OBS update dW of a layer's weight matrix ``w`` [out, in(+1)] when the rows
    ``pruned`` are removed: dW = - S^-1[:, P] diag(1 / [S^-1]_jj)_{j in P} W[P]
    (the sum of the single-filter updates, as the authors' ``_do_surgery``)."""
    idx = torch.as_tensor(sorted(pruned), dtype=torch.long)
    if idx.numel() == 0:
        return torch.zeros_like(w)
    s_inv = s_inv.to(torch.float64)
    coeff = s_inv[:, idx] / torch.diagonal(s_inv)[idx][None, :]
    return (-(coeff @ w.double()[idx])).to(w.dtype)


def updated_state(model: nn.Module, s_invs: dict, pruned: dict) -> dict:
    """The state dict of ``model`` with the Kron-OBS update of each layer applied:
    ``s_invs`` {layer: S^-1}, ``pruned`` {layer: filter indices}.  The pruned rows move
    too (they are masked afterwards); the kept rows carry the compensation."""
    mods = dict(model.named_modules())
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for layer, idx in pruned.items():
        if not idx:
            continue
        m = mods[layer]
        w = kfac.matrix_weight(m)
        dw, db = kfac.split_matrix(m, kron_obs_update(w, s_invs[layer].to(w.device), idx))
        state[f"{layer}.weight"] = state[f"{layer}.weight"] + dw
        if db is not None:
            state[f"{layer}.bias"] = state[f"{layer}.bias"] + db
    return state


class KronScorer(Scorer):
    """Kron-OBD (``method="kron_obd"``) or Kron-OBS (``"kron_obs"``) filter importance."""

    needs_data = True
    method = "kron_obd"

    def __init__(self, fisher: str = "true", form: str = "paper"):
        if fisher not in kfac.FISHERS:
            raise ValueError(f"{self.method}: fisher = {fisher!r} is not allowed; allowed: {', '.join(kfac.FISHERS)}")
        if form not in FORMS:
            raise ValueError(f"{self.method}: form = {form!r} is not allowed; allowed: {', '.join(FORMS)}")
        self.fisher, self.form = fisher, form
        #: Kron-OBS: {layer: S^-1} of the last ``score`` (the mask stage's update reads it).
        self.s_inverses: dict = {}

    def describe(self):
        return {"fisher": self.fisher, "form": self.form, "eig_floor": EIG_FLOOR, "inv_eps": INV_EPS}

    def artifact_extra(self) -> dict | None:
        """Kron-OBS: {layer: S^-1} stored beside the scores, for the update once the mask
        (which depends on the ratio) is known (``updated_state``); Kron-OBD: nothing."""
        return {"s_inverse": dict(self.s_inverses)} if self.method == "kron_obs" else None

    def score(self, model, params, batches, seed):
        from prunelib.methods.structured import channel_groups

        groups = channel_groups(model)
        layers = [g.producer for g in groups]
        factors = kfac.kfac_factors(model, layers, batches, seed, self.fisher, "unfold")
        mods = dict(model.named_modules())
        out = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
        for layer in layers:
            key = f"{layer}.weight"
            if key not in out:
                continue
            imp = kron_importance(kfac.matrix_weight(mods[layer]), factors[layer], self.method, self.form)
            out[key].reshape(out[key].shape[0], -1)[:, 0] = imp
            if self.method == "kron_obs":
                self.s_inverses[layer] = s_inverse(factors[layer].S).cpu()
        return out


class KronObdScorer(KronScorer):
    method = "kron_obd"


class KronObsScorer(KronScorer):
    method = "kron_obs"
