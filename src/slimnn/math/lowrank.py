"""The math of low-rank factorization: W (N x K) ~ U (N x r) V (r x K) (no kernels, no modules).

Two methods:

- ``"svd"``: truncated SVD of W, the best rank-r approximation in Frobenius norm (Eckart-Young).
- ``"activation_aware"``: SVD-LLM-style whitening. With calibration inputs X (rows are inputs of the layer) and
  C = X^T X / n + damping * mean(diag C) * I = L L^T (Cholesky), the truncated SVD of W L minimizes the *output*
  error ||(W - U V) X^T||_F over rank-r factors (exactly, when damping is 0), because
  ||(W - W') X^T||_F^2 = n * ||(W - W') L||_F^2. Then U = P_r S_r^1/2 and V = S_r^1/2 Q_r^T L^-1.

The singular values are split evenly between the factors (U = P S^1/2, V = S^1/2 Q^T), so both have the same
range, which is what int8 quantization of the factors wants.

Rank selection (one of): ``rank``; ``rank_ratio``, the fraction of the layer's parameters kept
(r = floor(ratio * N * K / (N + K))); ``energy``, the smallest r whose singular values hold that fraction of
sum(s^2); ``max_error``, the smallest r whose relative error sqrt(sum_{i>r} s^2 / sum s^2) is within the
budget. For ``activation_aware`` these are spectra of W L, so energy and error are of the layer's output on the
calibration data, which is the quantity a per-layer error budget should bound.

Solvers: ``"full"`` (LAPACK SVD), ``"randomized"`` (Halko, Martinsson and Tropp 2011, with power iterations;
deterministic seed), ``"auto"``: randomized when the rank needed is known to be small (r + oversampling
<= min(N, K) / 4), where it is several times faster and, with 4 power iterations, within a fraction of a percent
of the optimal error on matrices with decaying spectra (tests/test_lowrank.py checks it); full otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .quantize import check_weight

METHODS = ("svd", "activation_aware")
SOLVERS = ("auto", "full", "randomized")


@dataclass
class Factorization:
    """U (N x r) and V (r x K), float32, with W ~ U V; and what was known when the rank was chosen."""

    u: Tensor
    v: Tensor
    rank: int
    singular_values: Tensor  # the (whitened, for activation_aware) spectrum computed, descending
    rel_error: float  # estimated relative error (of W, or of the layer's output for activation_aware)


def rank_for_ratio(n: int, k: int, ratio: float) -> int:
    """Largest r with r * (N + K) <= ratio * N * K (at least 1)."""
    return max(1, int(math.floor(ratio * n * k / (n + k) + 1e-9)))


def choose_rank(
    s: Tensor,
    total_energy: float,
    n: int,
    k: int,
    rank: Optional[int] = None,
    rank_ratio: Optional[float] = None,
    energy: Optional[float] = None,
    max_error: Optional[float] = None,
) -> int:
    """The rank the selection rule asks for, from singular values ``s`` (descending, maybe a prefix of the
    spectrum) and the total energy sum(s^2) of the whole spectrum (||W||_F^2, known exactly even when only a
    prefix was computed). Raises ValueError if ``s`` is too short to decide."""
    given = [v is not None for v in (rank, rank_ratio, energy, max_error)]
    if sum(given) != 1:
        raise ValueError("choose exactly one of rank, rank_ratio, energy, max_error")
    full = min(n, k)
    if rank is not None:
        return max(1, min(int(rank), full))
    if rank_ratio is not None:
        return min(rank_for_ratio(n, k, rank_ratio), full)
    if total_energy <= 0:
        return 1
    cum = torch.cumsum(s.double() ** 2, 0) / total_energy
    if energy is not None:
        hit = (cum >= energy - 1e-12).nonzero()
    else:
        tail = (1.0 - cum).clamp_min(0.0).sqrt()
        hit = (tail <= max_error + 1e-12).nonzero()
    if hit.numel() == 0:
        if s.numel() >= full:
            return full
        raise ValueError("spectrum prefix too short")
    return int(hit[0].item()) + 1


def randomized_svd(
    a: Tensor, q: int, niter: int = 4, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Rank-q randomized SVD of a (float32): returns P (N x q), s (q), Qh (q x K). Power iterations are
    re-orthonormalized each time (QR) so small singular values are not lost to rounding."""
    n, k = a.shape
    q = min(q, n, k)
    g = torch.Generator().manual_seed(seed)
    omega = torch.randn(k, q, generator=g, dtype=a.dtype)
    y = torch.linalg.qr(a @ omega).Q
    for _ in range(niter):
        z = torch.linalg.qr(a.t() @ y).Q
        y = torch.linalg.qr(a @ z).Q
    b = y.t() @ a  # q x K
    ub, s, vh = torch.linalg.svd(b, full_matrices=False)
    return y @ ub, s, vh


def input_gram(x: Tensor) -> tuple[Tensor, int]:
    """X^T X in float64 and the row count, for rows of calibration inputs x (..., K)."""
    x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
    return x2.t() @ x2, x2.shape[0]


def whitening(gram: Tensor, n_rows: int, damping: float = 0.01) -> Tensor:
    """Lower-triangular L (float64) with L L^T = gram / n + damping * mean(diag) * I.

    Damping keeps C positive definite when calibration data do not span all input directions (fewer rows than
    K, dead features); if Cholesky still fails the damping is raised tenfold, up to 4 times."""
    if n_rows <= 0:
        raise ValueError("activation-aware factorization needs calibration inputs (got 0 rows)")
    c = gram.to(torch.float64) / n_rows
    if not bool(torch.isfinite(c).all()):
        raise ValueError("calibration inputs hold NaN or infinite values")
    k = c.shape[0]
    scale = float(c.diagonal().mean().clamp_min(1e-30))
    eye = torch.eye(k, dtype=torch.float64)
    d = max(damping, 0.0)
    for _ in range(5):
        l, info = torch.linalg.cholesky_ex(c + (d * scale) * eye)
        if int(info) == 0:
            return l
        d = max(d * 10, 1e-6)
    raise ValueError("calibration Gram matrix is not positive definite even with damping; check the inputs")


def _solver_for(solver: str, n: int, k: int, rank_hint: Optional[int]) -> str:
    if solver != "auto":
        return solver
    if rank_hint is not None and rank_hint + max(10, rank_hint // 10) <= min(n, k) // 4:
        return "randomized"
    return "full"


def factorize(
    weight: Tensor,
    rank: Optional[int] = None,
    rank_ratio: Optional[float] = None,
    energy: Optional[float] = None,
    max_error: Optional[float] = None,
    method: str = "svd",
    gram: Optional[Tensor] = None,
    n_rows: int = 0,
    damping: float = 0.01,
    solver: str = "auto",
    seed: int = 0,
) -> Factorization:
    """Factorizes ``weight`` (N x K) into U (N x r) and V (r x K), float32, with the rank chosen by exactly one
    of ``rank`` / ``rank_ratio`` / ``energy`` / ``max_error`` (see the module docstring).

    ``method="activation_aware"`` needs ``gram`` (X^T X, K x K, see :func:`input_gram` and
    :func:`slimnn.calibration.capture_linear_inputs`) and ``n_rows``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    w = check_weight(weight)
    n, k = w.shape
    l64 = None
    if method == "activation_aware":
        if gram is None:
            raise ValueError("method='activation_aware' needs calibration statistics (gram, n_rows)")
        if tuple(gram.shape) != (k, k):
            raise ValueError(f"gram must be {k} x {k} for a layer with {k} inputs, got {tuple(gram.shape)}")
        l64 = whitening(gram, n_rows, damping)
        a = (w.to(torch.float64) @ l64).to(torch.float32)
    else:
        a = w
    total = float(a.double().pow(2).sum())
    if rank is not None:
        hint: Optional[int] = max(1, min(int(rank), n, k))
    elif rank_ratio is not None:
        hint = min(rank_for_ratio(n, k, rank_ratio), n, k)
    else:
        hint = None
    how = _solver_for(solver, n, k, hint)
    if how == "randomized":
        q = (hint if hint is not None else min(n, k) // 4) + 10
        q = min(q + q // 10, min(n, k))
        p, s, qh = randomized_svd(a, q, niter=4, seed=seed)
        try:
            r = choose_rank(s, total, n, k, rank, rank_ratio, energy, max_error)
        except ValueError:  # the spectrum prefix does not reach the energy asked for: go full
            p, s, qh = torch.linalg.svd(a, full_matrices=False)
            r = choose_rank(s, total, n, k, rank, rank_ratio, energy, max_error)
    else:
        p, s, qh = torch.linalg.svd(a, full_matrices=False)
        r = choose_rank(s, total, n, k, rank, rank_ratio, energy, max_error)
    r = min(r, s.numel())
    root = s[:r].clamp_min(0).sqrt()
    u = p[:, :r] * root
    v = root.unsqueeze(1) * qh[:r]
    if l64 is not None:  # V = S^1/2 Q^T L^-1: solve V L = B for V
        v = torch.linalg.solve_triangular(l64, v.to(torch.float64), upper=False, left=False).to(torch.float32)
    kept = float(s[:r].double().pow(2).sum())
    rel = math.sqrt(max(total - kept, 0.0) / total) if total > 0 else 0.0
    return Factorization(u.contiguous(), v.contiguous(), r, s, rel)


def sparse_residual(
    weight: Tensor, u: Tensor, v: Tensor, fraction: float, input_scale: Optional[Tensor] = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The entries of R = W - U V worth keeping exactly: the ``fraction`` of entries with the largest
    |R[n, k]| * input_scale[k] (input_scale: the RMS of input feature k, when calibration data are known, so
    the entries that move the output most are kept). Returns CSR over output rows: (rowptr int64 [N + 1],
    col int32 [nnz], val float32 [nnz])."""
    w = check_weight(weight)
    n, k = w.shape
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    r = w - u.to(torch.float32) @ v.to(torch.float32)
    nnz = int(round(fraction * n * k))
    if nnz == 0:
        return torch.zeros(n + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int32), torch.zeros(0)
    score = r.abs() if input_scale is None else r.abs() * input_scale.to(torch.float32).unsqueeze(0)
    idx = torch.topk(score.reshape(-1), nnz, sorted=False).indices.sort().values
    rows, cols = idx // k, idx % k
    counts = torch.bincount(rows, minlength=n)
    rowptr = torch.zeros(n + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(counts, 0)
    return rowptr, cols.to(torch.int32), r.reshape(-1)[idx].contiguous()


def csr_to_dense(rowptr: Tensor, col: Tensor, val: Tensor, n: int, k: int) -> Tensor:
    """The dense N x K matrix of a CSR residual (float32)."""
    rows = torch.repeat_interleave(torch.arange(n), rowptr[1:] - rowptr[:-1])
    out = torch.zeros(n, k)
    out[rows, col.to(torch.int64)] = val.to(torch.float32)
    return out
