"""Non-negative least squares (Lawson & Hanson 1974), numpy only.

``nnls(A, b)`` minimises ``||A x - b||_2`` subject to ``x >= 0``. Used to fit the cost models:
every coefficient of a time model is a cost per unit of some work, so it may not be negative.
"""

from __future__ import annotations

import numpy as np


def nnls(A, b, max_iter: int | None = None, tol: float | None = None) -> np.ndarray:
    """The non-negative least-squares solution ``x`` of ``A x ~ b`` (``A`` is [r, c])."""
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if A.ndim != 2 or A.shape[0] != b.shape[0]:
        raise ValueError(f"nnls: A must be [r, c] and b [r], got {A.shape} and {b.shape}")
    r, c = A.shape
    if c == 0:
        return np.zeros(0)
    # scale columns to unit norm: the active-set steps are then well conditioned even when the
    # features differ by many orders of magnitude (n*m*k next to a constant)
    norms = np.linalg.norm(A, axis=0)
    scale = np.where(norms > 0, norms, 1.0)
    As = A / scale
    if tol is None:
        tol = 10 * max(r, c) * np.finfo(float).eps * max(1.0, float(np.abs(As).max(initial=0.0)))
    max_iter = max_iter or 3 * c + 30
    x = np.zeros(c)
    passive = np.zeros(c, dtype=bool)
    live = norms > 0  # an all-zero column stays at 0
    w = As.T @ (b - As @ x)
    it = 0
    while (~passive & live).any() and (w[~passive & live] > tol).any():
        cand = np.where(~passive & live, w, -np.inf)
        passive[int(np.argmax(cand))] = True
        while True:
            it += 1
            if it > max_iter * 10:
                break
            z = np.zeros(c)
            z[passive] = np.linalg.lstsq(As[:, passive], b, rcond=None)[0]
            if (z[passive] > tol).all():
                x = z
                break
            neg = passive & (z <= tol)
            denom = x[neg] - z[neg]
            alpha = np.min(np.where(denom > 0, x[neg] / np.where(denom > 0, denom, 1), 1.0))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = As.T @ (b - As @ x)
        if it > max_iter * 10:
            break
    return np.maximum(x, 0.0) / scale
