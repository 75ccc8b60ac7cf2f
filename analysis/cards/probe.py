"""The cards' linear probe in torch: every layer and fold of a card set as one batched L-BFGS problem.

The model is scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C, solver="lbfgs"))``
fitted on each fold's training rows, with the same objective, so the same optimum:

    f(W, b) = 1/n_f Σ_{i ∈ train_f} CE(softmax(z_i), y_i) + ‖W‖² / (2 C n_f),   z_i = W x̃_i + b,

x̃ the rows standardised with the fold's training mean and population standard deviation (a
feature of zero spread gets scale 1, as StandardScaler does); the intercept b is not penalised.
With two classes there is one weight vector (z = [0, w·x̃ + b], a binomial logistic regression,
as scikit-learn fits it); with C > 2 classes one per class. f is scikit-learn's objective divided
by n_f·C, so its gradient tolerance ``tol`` means the same: a fit has converged when
max|∇f| ≤ tol, or when f stops falling (relative change ≤ 64 machine epsilons, scipy's ``ftol``).

Batched: the (L+1)·F problems (layers × folds) share one parameter tensor θ (B, P) and one
L-BFGS loop with per-problem histories, steps and stopping, so each iteration is one product
of the states (L+1, n, d) with the weights of every fold. Standardisation is folded into the
weights (x̃ = (x − μ)/σ, so z = x·(W/σ) + b − (μ/σ)·W): the states are never copied per fold;
they are first centred on the layer's mean over all rows, so that μ is small and nothing cancels.
Float64 where the device has it (MPS: float32).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Bytes of states (float64) per group of layers fitted together on the CPU: about a core's share of the cache.
CPU_GROUP_BYTES = 4 << 20
#: L-BFGS history length (scipy's default ``maxcor``).
HISTORY = 10
#: Backtracking steps before a line search gives up (scipy's ``maxls`` default is 20).
MAX_LINE_SEARCH = 25


@dataclass
class ProbeFits:
    """The fits of every layer and fold; arrays are (L+1, F), indexed [layer, fold].

    accuracy / macro_f1 : held-out scores of each fold; objective : f at the end (see the module doc);
    grad_max : max|∇f| at the end; iterations : L-BFGS iterations; converged : whether the fit stopped
    by tolerance (not by ``max_iter`` or a failed line search).
    """

    accuracy: np.ndarray
    macro_f1: np.ndarray
    objective: np.ndarray
    grad_max: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    device: str


def probe_dtype(device: str):
    """float64, or float32 on MPS, which has no float64."""
    import torch

    return torch.float32 if str(device).startswith("mps") else torch.float64


class _Problem:
    """The batched objective: θ (B, P) → f (B,), ∇f (B, P), with B = layers × folds."""

    def __init__(self, states, labels: np.ndarray, splits, C: float, device: str):
        import torch

        dt = probe_dtype(device)
        X = torch.as_tensor(np.asarray(states) if not torch.is_tensor(states) else states).to(device, dt)
        X = X - X.mean(1, keepdim=True)  # (L, n, d) centred per layer: fold means are then small
        L, n, d = X.shape
        classes, y = np.unique(np.asarray(labels), return_inverse=True)
        K = len(classes)
        self.K, self.Kp, self.L, self.F, self.d = K, (1 if K == 2 else K), L, len(splits), d
        mask = np.zeros((self.F, n))
        for f, (train, _) in enumerate(splits):
            mask[f, train] = 1.0
        self.mask = torch.as_tensor(mask, dtype=dt, device=device)  # (F, n) 1 on training rows
        self.n_f = self.mask.sum(1)  # (F,)
        w = self.mask / self.n_f[:, None]  # (F, n)
        mu = torch.einsum("fn,lnd->lfd", w, X)  # (L, F, d) training means
        var = torch.einsum("fn,lnd->lfd", w, X.square()) - mu.square()
        sd = var.clamp_min(0).sqrt()
        sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # StandardScaler: zero spread, scale 1
        self.X, self.scale, self.shift = X, 1 / sd, mu / sd  # x̃ = x·scale − shift
        self.y = torch.as_tensor(y, device=device)
        self.Y = torch.nn.functional.one_hot(self.y, K).to(dt)  # (n, K)
        self.penalty = 1 / (2 * C * self.n_f)  # (F,)
        self.P = (d + 1) * self.Kp
        self.dtype, self.device = dt, device

    def logits(self, theta):
        """z (L, F, n, Kp) for θ (B, P): the free logits (with two classes, the one beside a fixed 0)."""
        import torch

        L, F, d, Kp = self.L, self.F, self.d, self.Kp
        th = theta.view(L, F, d + 1, Kp)
        W, b = th[:, :, :d], th[:, :, d]
        A = W * self.scale[..., None]  # (L, F, d, Kp) weights on the centred states
        c = b - torch.einsum("lfd,lfdk->lfk", self.shift, W)
        z = torch.bmm(self.X, A.permute(0, 2, 1, 3).reshape(L, d, F * Kp))  # (L, n, F·Kp)
        return z.view(L, -1, F, Kp).permute(0, 2, 1, 3) + c[:, :, None, :]

    def value_grad(self, theta):
        """(f (B,), ∇f (B, P)) at θ, the gradient by hand (twice as fast as autograd here)."""
        import torch

        L, F, d, Kp = self.L, self.F, self.d, self.Kp
        z = self.logits(theta)
        if self.K == 2:  # z = [0, z₁]: CE = softplus(z₁) − y z₁, ∂/∂z₁ = σ(z₁) − y
            z1, y1 = z[..., 0], self.Y[:, 1]
            ce = torch.nn.functional.softplus(z1) - y1 * z1
            R = (torch.sigmoid(z1) - y1)[..., None]
        else:
            lse = torch.logsumexp(z, -1, keepdim=True)
            ce = lse[..., 0] - (z * self.Y).sum(-1)
            R = torch.exp(z - lse) - self.Y
        w = (self.mask / self.n_f[:, None])[None, :, :]  # (1, F, n)
        R = R * w[..., None]  # (L, F, n, Kp) ∂f/∂z
        W = theta.view(L, F, d + 1, Kp)[:, :, :d]
        f = (ce * w).sum(-1) + self.penalty * W.square().sum((-1, -2))  # (L, F)
        gA = torch.bmm(self.X.transpose(1, 2), R.permute(0, 2, 1, 3).reshape(L, -1, F * Kp))  # (L, d, F·Kp)
        gA = gA.view(L, d, F, Kp).permute(0, 2, 1, 3)
        gc = R.sum(2)  # (L, F, Kp)
        gW = (
            gA * self.scale[..., None] - self.shift[..., None] * gc[:, :, None, :] + 2 * self.penalty[:, None, None] * W
        )
        return f.reshape(-1), torch.cat([gW, gc[:, :, None, :]], 2).reshape(L * F, -1)

    def predict(self, theta) -> np.ndarray:
        """Class indices (L, F, n)."""
        z = self.logits(theta)
        return (z[..., 0] > 0).long() if self.K == 2 else z.argmax(-1)


def fit_probes(
    states, labels: np.ndarray, splits, *, C: float = 1.0, max_iter: int = 200, tol: float = 1e-4, device: str = "cpu"
) -> ProbeFits:
    """Fit the probe of every layer on every fold (see the module doc) and score it on the held-out rows.

    states : (L+1, n, d) array or tensor; labels (n,); splits : F (train, test) index pairs.
    On a GPU all layers are one problem. On the CPU the products are bound by memory, not
    arithmetic: layers go in groups whose states fit :data:`CPU_GROUP_BYTES` (they stay in the
    cache between the two products of an evaluation), the groups in parallel threads with
    torch at one thread each (its own threads spin on a busy machine, as OpenBLAS's do).
    """
    import torch

    L = len(states)
    if not str(device).startswith("cpu"):
        with torch.no_grad():
            return _score(_fit_group(states, labels, splits, C, max_iter, tol, device), labels, splits, device)
    per = max(1, CPU_GROUP_BYTES // max(1, int(np.prod(states.shape[1:])) * 8))
    groups = [range(s, min(L, s + per)) for s in range(0, L, per)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max(1, min(os.cpu_count() or 1, len(groups)))) as pool:
            parts = list(
                pool.map(
                    lambda g: _fit_group(states[g.start : g.stop], labels, splits, C, max_iter, tol, "cpu"), groups
                )
            )
    finally:
        torch.set_num_threads(threads)
    return _score(tuple(torch.cat([p[i] for p in parts], 0) for i in range(6)), labels, splits, device)


def _fit_group(states, labels, splits, C, max_iter, tol, device):
    """(predictions (l, F, n), f, ∇f, iterations, converged, θ) of one group of layers, all its folds at once."""
    import torch

    with torch.no_grad():
        pb = _Problem(states, labels, splits, C, device)
        theta, f, g, iters, conv = _lbfgs(pb, max_iter, tol)
        shape = (pb.L, pb.F)
        return (
            pb.predict(theta),
            f.view(shape),
            g.abs().amax(-1).view(shape),
            iters.view(shape),
            conv.view(shape),
            theta.view(pb.L, pb.F, -1),
        )


def _score(fit, labels, splits, device) -> ProbeFits:
    """Held-out accuracy and macro-F1 of each fold's predictions, and the fits' facts, as a :class:`ProbeFits`."""
    from sklearn.metrics import f1_score

    pred, f, gmax, iters, conv, _ = (t.cpu().numpy() for t in fit)
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    L, F = f.shape
    acc, f1 = np.zeros((L, F)), np.zeros((L, F))
    for f_, (_, test) in enumerate(splits):
        for l in range(L):
            p = pred[l, f_, test]
            acc[l, f_] = float(np.mean(p == y[test]))
            f1[l, f_] = float(f1_score(y[test], p, average="macro", zero_division=0))
    return ProbeFits(acc, f1, f, gmax, iters, conv.astype(bool), str(device))


def _lbfgs(pb: _Problem, max_iter: int, tol: float):
    """Batched L-BFGS with backtracking (Armijo) line search; each problem stops on its own.

    Returns θ (B, P), f (B,), ∇f (B, P), iterations (B,), converged (B,) bool.
    """
    import torch

    B = pb.L * pb.F
    theta = torch.zeros(B, pb.P, dtype=pb.dtype, device=pb.device)
    f, g = pb.value_grad(theta)
    S: list = []  # the last HISTORY steps s (B, P)
    Y: list = []  # their gradient changes y (B, P)
    rho: list = []  # 1/(yᵀs) (B,), 0 where a pair is skipped
    iters = torch.zeros(B, dtype=torch.long, device=pb.device)
    conv = g.abs().amax(-1) <= tol
    active = ~conv
    ftol = 64 * torch.finfo(pb.dtype).eps
    first = True
    while bool(active.any()) and int(iters.max()) < max_iter:
        d = -_two_loop(g, S, Y, rho)
        d[~active] = 0
        t = torch.ones(B, dtype=pb.dtype, device=pb.device)
        if first:  # no curvature yet: a first step of length 1/‖g‖ (scipy's choice)
            t = 1 / g.norm(dim=-1).clamp_min(1e-12)
        slope = (g * d).sum(-1)
        todo = active.clone()
        new_theta, new_f, new_g = theta.clone(), f.clone(), g.clone()
        for _ in range(MAX_LINE_SEARCH):
            trial = theta + t[:, None] * d
            ft, gt = pb.value_grad(trial)
            ok = todo & (ft <= f + 1e-4 * t * slope)
            new_theta[ok], new_f[ok], new_g[ok] = trial[ok], ft[ok], gt[ok]
            todo &= ~ok
            if not bool(todo.any()):
                break
            t = torch.where(todo, t / 2, t)
        failed = todo  # no acceptable step: stop there, not converged
        active &= ~failed
        s, yv = new_theta - theta, new_g - g
        sy = (s * yv).sum(-1)
        S.append(s)
        Y.append(yv)
        rho.append(torch.where(active & (sy > 1e-10), 1 / sy.clamp_min(1e-300), torch.zeros_like(sy)))
        if len(S) > HISTORY:
            S.pop(0), Y.pop(0), rho.pop(0)
        small_change = (f - new_f).abs() <= ftol * torch.maximum(
            torch.maximum(f.abs(), new_f.abs()), torch.ones_like(f)
        )
        iters += active.long()
        theta, f, g = new_theta, new_f, new_g
        done = active & ((g.abs().amax(-1) <= tol) | small_change)
        conv |= done
        active &= ~done
        first = False
    return theta, f, g, iters, conv


def _two_loop(g, S, Y, rho):
    """H·g for each problem by the L-BFGS two-loop recursion over its history (γ = sᵀy/yᵀy of the last pair)."""
    import torch

    q = g.clone()
    alphas = []
    for s, y, r in zip(reversed(S), reversed(Y), reversed(rho), strict=True):
        a = r * (s * q).sum(-1)
        q -= a[:, None] * y
        alphas.append(a)
    if S:
        sy, yy = (S[-1] * Y[-1]).sum(-1), (Y[-1] * Y[-1]).sum(-1)
        gamma = torch.where((rho[-1] > 0) & (yy > 0), sy / yy.clamp_min(1e-300), torch.ones_like(sy))
        q *= gamma[:, None]
    for s, y, r, a in zip(S, Y, rho, reversed(alphas), strict=True):
        beta = r * (y * q).sum(-1)
        q += (a - beta)[:, None] * s
    return q


def sklearn_probes(states, labels: np.ndarray, splits, *, C: float = 1.0, max_iter: int = 200, tol: float = 1e-4):
    """The reference: scikit-learn's ``StandardScaler`` + ``LogisticRegression`` per layer and fold, one at a time.

    Returns a :class:`ProbeFits` with f (the module doc's objective, from the fitted coefficients)
    and scikit-learn's own iteration count; ``converged`` is whether it stopped before ``max_iter``.
    Used by the tests and the bench (speed beside :func:`fit_probes`), not by the cards.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    shape = (len(states), len(splits))
    out = {k: np.zeros(shape) for k in ("accuracy", "macro_f1", "objective", "grad_max", "iterations")}
    converged = np.zeros(shape, dtype=bool)
    for l in range(len(states)):
        X = np.asarray(states[l], dtype=np.float64)
        for f, (train, test) in enumerate(splits):
            scaler = StandardScaler().fit(X[train])
            Xt = scaler.transform(X[train])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # recorded below instead
                m = LogisticRegression(C=C, max_iter=max_iter, tol=tol).fit(Xt, labels[train])
            pred = m.predict(scaler.transform(X[test]))
            z = Xt @ m.coef_.T + m.intercept_
            if z.shape[1] == 1:
                z = np.hstack([np.zeros_like(z), z])
            ce = np.logaddexp.reduce(z, axis=1) - z[np.arange(len(train)), np.searchsorted(m.classes_, labels[train])]
            out["accuracy"][l, f] = float(np.mean(pred == labels[test]))
            out["macro_f1"][l, f] = float(f1_score(labels[test], pred, average="macro", zero_division=0))
            out["objective"][l, f] = ce.mean() + np.square(m.coef_).sum() / (2 * C * len(train))
            out["grad_max"][l, f] = np.nan
            out["iterations"][l, f] = int(np.max(m.n_iter_))
            converged[l, f] = int(np.max(m.n_iter_)) < max_iter
    return ProbeFits(**out, converged=converged, device="cpu")
