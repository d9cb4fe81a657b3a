"""A patient's averaged curves at given event times, every endpoint and option at once.

Under option o the patient's survival for endpoint e is the mixture S̄(t) = sum_k w_k S_k(t) over the patterns k of
the unknown optional inputs that agree with the known ones, w_k = P(pattern | known inputs) under the endpoint's
unknowns model (one component when every input is known). Its delta-method variance (Tsiatis; the weights treated as
known), with a_k(t) = w_k S_k(t) / S̄(t), r_eff = sum_k a_k r_k and A = sum_k a_k r_k z_k:

    Var(-log S̄(t)) = r_eff² vc + q̄' V q̄,  q̄ = A H - r_eff XC,  i.e.  r_eff² vc + H² A'VA - 2 H r_eff A.B + r_eff² g

(vc = sum d/S0², B = XC V, g = diag(XC V XC'); ``prognosis.prepared``). Every average over the components is one
matrix product, the components' moment columns (``prognosis.prepared.Combination``) times their survival, so one
call evaluates every endpoint, option and pattern at any number of times in a fixed number of array operations.
Arrays are (endpoints, options, ..., times); event indices are (endpoints, times), the sentinel padding them.

Conditional on s months without the event, the curve is S̄(t) / S̄(s) (``Base``, ``curve``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prognosis.normal import Z_95
from prognosis.prepared import Combination, Prepared

# Below this averaged survival the averaging weights w_k S_k / S̄ are computed in logs (S_k near underflow).
TINY = 1e-200


@dataclass(frozen=True, eq=False)
class Mixture:
    """A patient's components: the compatible patterns ``which`` (None: all) with per endpoint their ``weights``
    (endpoints, K); ``r`` (endpoints, options, K), the moment ``columns`` and ``weighted`` = columns x weights
    (endpoints, options, C, K); the components' survival on the grid (endpoints, options, K, grid) when the model
    keeps it; ``spread`` (endpoints, options, 1) = max_k r - min_k r."""

    prep: Prepared
    comb: Combination
    which: np.ndarray | None
    weights: np.ndarray
    r: np.ndarray
    columns: np.ndarray
    weighted: np.ndarray
    grid_survival: np.ndarray | None
    spread: np.ndarray

    @property
    def z(self) -> np.ndarray:
        """The components' terms (options, K, p)."""
        return self.comb.z if self.which is None else self.comb.z[:, self.which]


def mixture(prep: Prepared, patient: dict[str, str | None]) -> Mixture:
    """The patient's components: the patterns of the unknowns compatible with the known inputs, weighted by
    P(pattern | known inputs) (a softmax of each chain's log-probabilities over them), under each option."""
    comb = prep.combination(patient)
    which = prep.patterns_of(patient)
    if which is None:
        return every_unknown(prep, comb)
    log_w, r, columns = comb.log_joint[:, which], comb.r[..., which], comb.columns[..., which]
    table = None if comb.grid_survival is None else comb.grid_survival[:, :, which]
    weights = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    spread = r.max(axis=2, keepdims=True) - r.min(axis=2, keepdims=True)
    return Mixture(prep, comb, which, weights, r, columns, columns * weights[:, None, None, :], table, spread)


def every_unknown(prep: Prepared, comb: Combination) -> Mixture:
    """The mixture of a patient with every optional input unknown: the combination's own weights."""
    return Mixture(prep, comb, None, comb.weights, comb.r, comb.columns, comb.weighted, comb.grid_survival, comb.spread)


@dataclass(frozen=True, eq=False)
class Values:
    """The mixture at event indices ``idx`` (endpoints, n): S̄ ``s``, ``r_eff`` and ``var`` (of -log S̄), each
    (endpoints, options, n), and A's coordinates ``y`` = (r_eff, E[r v]) (endpoints, options, 1 + D, n),
    A = y' basis. On the grid also, for the gap bounds (``prognosis.medians``): ``quad`` = ||q̄||²_V (before rounding
    is clipped at 0), the size of its terms ``scale`` = H² A'VA + r_eff² g, ``gy`` = gram y (A's V-products), A'VA
    ``ava``, E[r²] ``m_r2`` and E[r² z'Vz] ``r2zvz``."""

    idx: np.ndarray
    s: np.ndarray
    r_eff: np.ndarray
    y: np.ndarray
    var: np.ndarray
    quad: np.ndarray | None = None
    scale: np.ndarray | None = None
    gy: np.ndarray | None = None
    ava: np.ndarray | None = None
    m_r2: np.ndarray | None = None
    r2zvz: np.ndarray | None = None


def evaluate(mix: Mixture, idx: np.ndarray | None = None) -> Values:
    """The mixture and its variance at the event indices ``idx`` (endpoints, n), every endpoint and option at once;
    None: the model's grid, with the moments the gap bounds need."""
    prep, comb = mix.prep, mix.comb
    d1 = 1 + len(prep.varying)
    if idx is None:
        idx = prep.grid
        h, vc, g = prep.grid_rows
        b_coords = comb.grid_b
        survival = mix.grid_survival
        columns = mix.weighted
    else:
        h, vc, g = prep.rows(idx)
        b_coords = comb.basis @ prep.columns_at(prep.b_t, idx)[:, None]
        survival = None
        columns = mix.weighted[:, :, : 1 + d1]
    if survival is None:
        survival = mix.r[..., None] * -h[:, :, None, :]
        np.exp(survival, out=survival)  # (endpoints, options, K, n): S_k(t)
    # Per moment column c, sum_k w_k S_k(t) c_k: [1, r, r v] (and on the grid [r², r² z'Vz]).
    sums = columns @ survival
    s = sums[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sums[:, :, 1:] / s[:, :, None]
    low = s < TINY
    if low.any():
        # Where every S_k is near underflow the averages are taken in logs, shifted by their maximum over k.
        e, o, t = np.nonzero(low)
        log_ws = np.log(mix.weights[e]) - h[e, 0, t][:, None] * mix.r[e, o]
        w = np.exp(log_ws - log_ws.max(axis=1, keepdims=True))
        w /= w.sum(axis=1)[:, None]
        ratio[e, o, :, t] = np.einsum("nk,nck->nc", w, mix.columns[e, o, 1 : 1 + ratio.shape[2]])
    y = ratio[:, :, :d1]
    r_eff = ratio[:, :, 0]
    gy = comb.gram @ y
    ava = np.einsum("eoit,eoit->eot", gy, y)
    avx = np.einsum("eoit,eoit->eot", b_coords, y)
    h_ava, r2_g = h**2 * ava, r_eff**2 * g
    quad = h_ava - 2 * h * r_eff * avx + r2_g
    var = r_eff**2 * vc + np.maximum(quad, 0.0)
    if idx is not prep.grid:
        return Values(idx, s, r_eff, y, var)
    return Values(idx, s, r_eff, y, var, quad, h_ava + r2_g, gy, ava, ratio[:, :, d1], ratio[:, :, d1 + 1])


@dataclass(frozen=True, eq=False)
class Base:
    """What a conditional curve S(t | T > s) = S̄(t) / S̄(s) needs at s, per endpoint and option: its event index
    ``index`` (endpoints, 1; -1 before the endpoint's first event time), S̄ ``s``, ``r_eff``, q̄ and V q̄ (endpoints,
    options, p), the variance of -log S̄ and sum d/S0² ``vc`` (endpoints, 1, 1). Before the first event time the
    values are the sentinel's: S̄ = 1, q̄ = 0, variance 0, vc = 0. ``index`` None: unconditional."""

    index: np.ndarray | None
    s: np.ndarray
    r_eff: np.ndarray
    q: np.ndarray
    vq: np.ndarray
    var: np.ndarray
    vc: np.ndarray

    @property
    def after(self) -> np.ndarray:
        """The event index after which the curve runs, per endpoint (endpoints, 1): -1 unconditional."""
        return self.index if self.index is not None else np.full((len(self.s), 1), -1)


def base_at(mix: Mixture, index: np.ndarray | None) -> Base:
    """The mixture at event indices ``index`` (endpoints,; -1 before the first event time) for conditioning on them;
    None: unconditional."""
    prep = mix.prep
    shape = mix.r.shape[:2]
    if index is None:
        zeros = np.zeros(shape)
        q = np.zeros((*shape, len(prep.terms)))
        return Base(None, np.ones(shape), zeros, q, q, zeros, np.zeros((shape[0], 1, 1)))
    at = np.where(index < 0, prep.sentinel, index)[:, None]
    v = evaluate(mix, at)
    a = (v.y[..., 0][:, :, None, :] @ mix.comb.basis)[:, :, 0]  # (endpoints, options, p)
    h, vc, _ = prep.rows(at)
    xc = prep.columns_at(prep.xc_t, at)[..., 0]  # (endpoints, p)
    q = a * h[..., 0, None] - v.r_eff[..., 0, None] * xc[:, None, :]
    vq = (q[:, :, None, :] @ prep.cov[:, None])[:, :, 0]
    return Base(index[:, None], v.s[..., 0], v.r_eff[..., 0], q, vq, v.var[..., 0], vc)


@dataclass(frozen=True, eq=False)
class Curve:
    """The (conditional) curve at ``values.idx``: ``bands`` (3, endpoints, options, n) = estimate, lower and upper
    95% limit, ``var`` the variance of its -log and, conditional on s, ``q_vs`` = q̄(t)' V q̄(s)."""

    values: Values
    bands: np.ndarray
    var: np.ndarray
    q_vs: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        arrays = [*vars(self.values).values(), self.bands, self.var, self.q_vs]
        return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def curve(mix: Mixture, values: Values, base: Base) -> Curve:
    """S̄(t) / S̄(s) with its log-type 95% interval. Var(-log S(t|s)) = Var(t) - 2 Cov(t, s) + Var(s), where both the
    baseline increments up to s and the coefficients are shared: Cov = r_eff(t) r_eff(s) sum_{i<=s} d/S0² +
    q̄(t)' V q̄(s). Unconditional: S(s) = 1 and the covariance terms vanish."""
    prep = mix.prep
    s, var, q_vs = values.s, values.var, None
    bands = np.empty((3, *s.shape))
    with np.errstate(divide="ignore"):
        log_s = np.log(s)
    if base.index is not None:
        idx = values.idx
        b_vq = (mix.comb.basis @ base.vq[..., None])[..., 0]  # basis V q̄(s): (endpoints, options, 1 + D)
        h = prep.rows(idx)[0]
        xc_vq = base.vq @ prep.columns_at(prep.xc_t, idx)
        q_vs = np.einsum("eoit,eoi->eot", values.y, b_vq) * h - values.r_eff * xc_vq
        var = np.maximum(var - 2 * (values.r_eff * base.r_eff[..., None] * base.vc + q_vs) + base.var[..., None], 0.0)
        # S(s) that underflowed to 0 (hazard ratios near e^20) leaves the conditional curve undefined: NaN, quietly.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.divide(s, base.s[..., None], out=bands[0])
            log_s = log_s - np.log(base.s)[..., None]
    else:
        bands[0] = s
    half = Z_95 * np.sqrt(var)
    np.exp(log_s - half, out=bands[1])
    np.exp(np.minimum(0.0, log_s + half), out=bands[2])
    return Curve(values, bands, var, q_vs)


@dataclass(frozen=True, eq=False)
class Points:
    """Everything evaluated for one patient, by event index ``idx`` (endpoints, n; sorted per endpoint, the sentinel
    last): the curves' ``bands`` (3, endpoints, options, n); r_eff and A's coordinates are read from the ``curves``
    evaluated, point j of endpoint e being their concatenation's point ``order`` [e, j] (``at``)."""

    idx: np.ndarray
    bands: np.ndarray
    curves: tuple[Curve, ...]
    order: np.ndarray

    def at(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r_eff (endpoints, options, h) and y (endpoints, options, 1 + D, h) at positions ``pos`` (endpoints, h)."""
        src = self.order[np.arange(len(pos))[:, None], pos][:, None, :]
        first = self.curves[0].values
        if len(self.curves) == 1:
            return _lanes(first.r_eff, src), _lanes(first.y, src)
        second, n = self.curves[1].values, first.r_eff.shape[-1]
        own = src < n
        mine, theirs = np.minimum(src, n - 1), np.maximum(src - n, 0)
        r_eff = np.where(own, _lanes(first.r_eff, mine), _lanes(second.r_eff, theirs))
        y = np.where(own[:, :, None, :], _lanes(first.y, mine), _lanes(second.y, theirs))
        return r_eff, y


def _lanes(values: np.ndarray, src: np.ndarray) -> np.ndarray:
    """values[e, o, ..., src[e, 0, j]] for values (endpoints, options, [k,] n) and src (endpoints, 1, h)."""
    rows, options = np.arange(values.shape[0])[:, None, None], np.arange(values.shape[1])[:, None]
    if values.ndim == 4:
        return values.transpose(0, 1, 3, 2)[rows, options, src].transpose(0, 1, 3, 2)
    return values[rows, options, src]


def points(*curves: Curve) -> Points:
    """Curves evaluated at event indices that differ but for the sentinel, as one set sorted per endpoint."""
    if len(curves) == 1:
        idx = curves[0].values.idx
        return Points(idx, curves[0].bands, curves, np.broadcast_to(np.arange(idx.shape[1]), idx.shape))
    idx = np.concatenate([c.values.idx for c in curves], axis=1)
    endpoints, n = idx.shape
    order = np.argsort(idx, axis=1)
    bands = np.concatenate([c.bands for c in curves], axis=-1)
    # One gather in the flattened arrays: row (curve, endpoint, option) starts at its index times n.
    lanes = np.arange(bands.size // n).reshape(*bands.shape[:-1], 1) * n
    return Points(
        idx.ravel()[order + np.arange(endpoints)[:, None] * n], bands.ravel()[lanes + order[:, None, :]], curves, order
    )
