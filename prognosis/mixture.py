"""One patient's averaged curves for one endpoint, evaluated only at the event times the answer needs.

A patient with unknown optional inputs has, per option o, the mixture S̄_o(t) = sum_k w_k S_ok(t) over the
patterns k of the unknowns (one component when every input is known). Everything returned reads S̄ (and its
delta-method variance) at a few event times, except three things, each handled exactly:

- **medians** and their confidence limits: the first event time at which S̄ (or its lower or upper bound curve)
  is at or below 0.5. With few components every event time is evaluated (cheap). Otherwise S̄ is evaluated on the
  model's grid (``prognosis.prepared``), and each gap between grid points is either shown not to contain the
  crossing or evaluated event time by event time. S̄ is monotone, so only the gap before the first grid point at or
  below 0.5 can hold its crossing. The bound curves are not monotone; for them a gap is skipped only when bounds
  on the variance inside it prove the curve stays above 0.5 (``_sd_bounds``), otherwise it is evaluated.
- **RMST**: linear in the weights, so per combination of the required covariates the model keeps, for every
  (option, pattern) component, its area, its beta-gradient and the Gram matrix of its baseline coefficients at
  the default horizon (``prognosis.prepared.RmstBlock``); a patient's RMST and its variance are sums over those.
  Other horizons (or models whose covariates cannot be enumerated) take the exact path over every event time.
- everything is vectorised over options and patterns: one (options x event times x components) exponential per
  call.

Variance of -log S̄ at t (Tsiatis; the weights treated as known), with a_k = w_k S_k / S̄ and r_eff = sum a_k r_k,
A = sum a_k r_k z_k, q̄ = A H - r_eff XC:  r_eff² sum d/S0² + q̄' V q̄.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prognosis import covariates
from prognosis.normal import Z_95
from prognosis.prepared import RMST_TABLE_BUDGET, Prepared, RmstBlock

# Below this averaged survival the averaging weights w_k S_k / S̄ are computed in logs (S_k near underflow).
TINY = 1e-200
# A gap is skipped only when its bound clears 0.5 by more than this (relative), far above rounding.
MARGIN = 1e-9
# Up to this many patterns of the unknowns per option (8: the three systemic therapies unknown, say), every event
# time is evaluated: cheaper than locating the medians gap by gap.
FULL_EVALUATION_PATTERNS = 8
# Components are kept for at most this many combinations of the fixed covariates per endpoint (24 for the shipped
# model's required covariates; more only with numeric ones), ~100 KB each.
COMPONENTS_KEPT = 4096
N_OPTIONS = len(covariates.OPTIONS)
# Columns of Components.columns: 1, r, r², r² z'Vz, then r z.
# Columns of Components.columns: 1, r, r², r² z'Vz, then r and r² times each term's pattern part (Prepared.varying).
_ONE, _R, _R2, _R2ZVZ, _VARYING = 0, 1, 2, 3, 4


@dataclass(frozen=True, eq=False)
class Components:
    """Every (option, pattern) component for one combination of the patient's fixed covariates (those outside the
    patterns of the unknowns): ``fixed`` (options, p) the terms' parts other than the pattern's, ``z`` (options, P,
    p) = fixed x pattern part, ``r`` (options, P), ``columns`` (options, P, 4 + 2 D) = [1, r, r², r² z'Vz,
    r pi, r² pi] with pi the pattern parts of the D terms that have one, and ``log_joint`` (P,): log P(pattern | the
    fixed covariates) under the chain.

    A term without a pattern part is the same for every component, so the average of r z over the components is
    r_eff times it; only the D others need a column of their own."""

    fixed: np.ndarray
    z: np.ndarray
    r: np.ndarray
    columns: np.ndarray
    log_joint: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.fixed.nbytes + self.z.nbytes + self.r.nbytes + self.columns.nbytes + self.log_joint.nbytes


def components(prep: Prepared, patient: dict[str, str | None]) -> Components:
    """The components of every pattern under every option for the patient's fixed covariates (kept per model)."""
    key = tuple(patient[name] for name in prep.fixed_names)
    found = prep.components.get(key)
    if found is not None:
        return found
    fixed = prep.parts.other_rows(patient)
    z = fixed[:, None, :] * prep.parts.pattern_factor[None, :, :]
    r = np.exp(z @ prep.coef)
    zvz = np.maximum(((z @ prep.cov) * z).sum(axis=-1), 0.0)
    r2 = r * r
    pi = prep.parts.pattern_factor[:, prep.varying][None, :, :]
    columns = np.concatenate(
        [np.stack([np.ones_like(r), r, r2, r2 * zvz], axis=-1), r[..., None] * pi, r2[..., None] * pi], axis=-1
    )
    made = Components(fixed, z, r, columns, prep.patterns.log_joint(patient))
    if len(prep.components) < COMPONENTS_KEPT:
        prep.components[key] = made
    return made


@dataclass(frozen=True, eq=False)
class Mixture:
    """A patient's components for one endpoint: ``which`` patterns with ``weights``; ``fixed`` (options, p), ``z``
    (options, K, p) and ``r`` (options, K) per option and pattern; ``weighted`` = the weights times the components'
    columns (when the medians are located gap by gap, ``full`` False); ``spread`` (options,) = max_k r - min_k r;
    ``key`` the RMST tables' key (None: none)."""

    prep: Prepared
    which: np.ndarray
    weights: np.ndarray
    fixed: np.ndarray
    z: np.ndarray
    r: np.ndarray
    weighted: np.ndarray
    full: bool
    spread: np.ndarray
    key: tuple | None


def mixture(prep: Prepared, patient: dict[str, str | None]) -> Mixture:
    """The patient's components: the patterns of the unknowns compatible with the known inputs, weighted by
    P(pattern | known inputs), under each option."""
    comps = components(prep, patient)
    which = prep.patterns.compatible(patient)
    every = len(which) == len(comps.log_joint)
    z, r, columns, log_w = (
        (comps.z, comps.r, comps.columns, comps.log_joint)
        if every
        else (comps.z[:, which], comps.r[:, which], comps.columns[:, which], comps.log_joint[which])
    )
    if len(which) == 1:
        weights = np.ones(1)
    else:
        weights = np.exp(log_w - log_w.max())
        weights /= weights.sum()
    full = len(which) <= FULL_EVALUATION_PATTERNS
    # Few components are averaged with their weights a_k(t) directly; the columns serve the gap-by-gap path.
    weighted = columns[..., :0] if full else columns * weights[:, None]
    key = tuple(patient[name] for name in prep.rmst_keys) if prep.rmst_keys is not None else None
    return Mixture(prep, which, weights, comps.fixed, z, r, weighted, full, r.max(axis=1) - r.min(axis=1), key)


@dataclass(frozen=True, eq=False)
class Values:
    """The mixture at event indices ``idx`` (n,), per option (options, n): S̄ ``s``, ``r_eff``, ``var`` (of -log S̄)
    and ``ava`` = A'VA, with A the averaged r z: either ``a`` itself (options, n, p), or (every event time, few
    components) the averaging weights ``omega`` (options, K, n) and the components' ``rz`` (options, K, p), A being
    sum_k omega_k rz_k where needed. For the gap bounds (mixtures located gap by gap only, else None): the variance
    of r under the weights ``var_r``, the average of r² z'Vz ``r2zvz`` and the covariance of r with r z
    ``cov_rz``."""

    idx: np.ndarray
    s: np.ndarray
    r_eff: np.ndarray
    var: np.ndarray
    ava: np.ndarray
    a: np.ndarray | None = None
    omega: np.ndarray | None = None
    rz: np.ndarray | None = None
    var_r: np.ndarray | None = None
    r2zvz: np.ndarray | None = None
    cov_rz: np.ndarray | None = None

    _FIELDS = ("s", "r_eff", "var", "ava", "a", "omega", "rz", "var_r", "r2zvz", "cov_rz")

    def a_at(self, j: int | slice | np.ndarray) -> np.ndarray:
        """A at positions j: (options, [len(j),] p)."""
        if self.a is not None:
            return self.a[:, j]
        assert self.omega is not None and self.rz is not None
        return np.einsum("ok...,okp->o...p", self.omega[:, :, j], self.rz)

    def a_dot(self, vectors: np.ndarray) -> np.ndarray:
        """A . v_o at every position, for one vector per option (options, p): (options, n)."""
        if self.a is not None:
            return (self.a @ vectors[..., None])[..., 0]
        assert self.omega is not None and self.rz is not None
        return np.einsum("okn,ok->on", self.omega, (self.rz @ vectors[..., None])[..., 0])

    def q(self, prep: Prepared, j: int | slice | np.ndarray = slice(None)) -> np.ndarray:
        """The averaged beta-gradient of the cumulative hazard, q̄ = A H - r_eff XC, at positions j."""
        i = self.idx[j]
        return self.a_at(j) * np.expand_dims(prep.hc[i], -1) - self.r_eff[:, j, None] * prep.xc[i]

    def take(self, pos: np.ndarray) -> Values:
        def part(k: str) -> np.ndarray | None:
            value = getattr(self, k)
            if value is None or k == "rz":
                return value
            return value[:, :, pos] if k == "omega" else value[:, pos]

        return Values(self.idx[pos], *(part(k) for k in self._FIELDS))  # type: ignore[arg-type]


def evaluate(mix: Mixture, idx: np.ndarray) -> Values:
    """The mixture and its variance at the event indices ``idx`` (all options at once)."""
    prep = mix.prep
    if idx is prep.every:
        h, vc, g, b = prep.hc, prep.vc, prep.g, prep.b
    else:
        idx = np.asarray(idx, dtype=np.intp)
        h, vc, g, b = prep.hc[idx], prep.vc[idx], prep.g[idx], prep.b[idx]
    n, k, p = len(idx), len(mix.weights), len(prep.terms)
    if k == 1:
        # One component per option: r_eff = r and A = r z at every time, no averaging weights.
        r, z = mix.r[:, 0], mix.z[:, 0]
        s = np.exp(np.multiply.outer(-r, h))
        zvz = np.einsum("op,pq,oq->o", z, prep.cov, z)
        r_eff = np.broadcast_to(r[:, None], (N_OPTIONS, n))
        ava = np.broadcast_to((r**2 * zvz)[:, None], (N_OPTIONS, n))
        a = np.broadcast_to((r[:, None] * z)[:, None, :], (N_OPTIONS, n, p))
        # r² (vc + (z H - XC)' V (z H - XC)), the quadratic form expanded: r² (zVz H² - 2 H z.B + g).
        inner = np.multiply.outer(zvz, h * h)
        inner -= 2 * h * (z @ (prep.b_t if idx is prep.every else b.T))
        inner += g
        np.maximum(inner, 0.0, out=inner)
        inner += vc
        var = inner * (r**2)[:, None]
        if mix.full:
            return Values(idx, s, r_eff, var, ava, a)
        zeros = np.zeros((N_OPTIONS, n))
        return Values(idx, s, r_eff, var, ava, a, None, None, zeros, ava, np.zeros((N_OPTIONS, n, p)))
    if mix.full:
        # Few components: the weights a_k(t) themselves, laid out (options, K, n), and A'VA = a' M a with
        # M = (r z) V (r z)' (K x K), A . B(t) = a . (r z . B(t)).
        e = np.multiply.outer(-mix.r, h)
        np.exp(e, out=e)
        e *= mix.weights[:, None]
        s = e.sum(axis=1)
        with np.errstate(all="ignore"):
            omega = e / s[:, None, :]
        low = s < TINY
        if low.any():
            o, t = np.nonzero(low)
            log_ws = np.log(mix.weights) - h[t][:, None] * mix.r[o]
            w = np.exp(log_ws - log_ws.max(axis=1, keepdims=True))
            omega[o, :, t] = w / w.sum(axis=1)[:, None]
        rz = mix.r[..., None] * mix.z
        r_eff = np.einsum("okn,ok->on", omega, mix.r)
        m = rz @ prep.cov @ rz.transpose(0, 2, 1)
        ava = np.einsum("okn,okn->on", m @ omega, omega)
        avx = np.einsum("okn,okn->on", rz @ (prep.b_t if idx is prep.every else b.T), omega)
        quad = h**2 * ava - 2 * h * r_eff * avx + r_eff**2 * g
        var = r_eff**2 * vc + np.maximum(quad, 0.0)
        return Values(idx, s, r_eff, var, ava, None, omega, rz)
    e = np.multiply.outer(-mix.r, h).transpose(0, 2, 1)  # (options, n, K): S_k(t), built in place
    np.exp(e, out=e)
    # sum_k w_k S_k(t) c_k for each column c, the weights already in the columns.
    sums = np.matmul(e, mix.weighted)
    s = sums[..., _ONE]
    with np.errstate(all="ignore"):
        ratio = sums[..., _R:] / s[..., None]
    low = s < TINY
    if low.any():
        # Where every S_k is near underflow the ratios are taken in logs, shifted by their maximum over k.
        o, t = np.nonzero(low)
        log_ws = np.log(mix.weights) - h[t][:, None] * mix.r[o]
        w = np.exp(log_ws - log_ws.max(axis=1, keepdims=True))
        w /= w.sum(axis=1)[:, None]
        ratio[o, t] = np.einsum("nk,nkc->nc", w, mix.weighted[o][..., _R:] / mix.weights[:, None])
    d = len(prep.varying)
    r_eff = ratio[..., _R - 1]
    m_r2 = ratio[..., _R2 - 1]
    # A = E[r z] and E[r² z]: the fixed part times E[r] (E[r²]) for terms without a pattern part, times E[r pi]
    # (E[r² pi]) for the D others.
    fixed = mix.fixed[:, None, :]
    a = r_eff[..., None] * fixed
    a[..., prep.varying] = ratio[..., _VARYING - 1 : _VARYING - 1 + d] * fixed[..., prep.varying]
    flat = a.reshape(-1, p)
    ava = np.einsum("np,np->n", flat @ prep.cov, flat).reshape(r_eff.shape)
    avx = np.einsum("onp,np->on", a, b)
    quad = h**2 * ava - 2 * h * r_eff * avx + r_eff**2 * g
    var = r_eff**2 * vc + np.maximum(quad, 0.0)
    r2z = m_r2[..., None] * fixed
    r2z[..., prep.varying] = ratio[..., _VARYING - 1 + d :] * fixed[..., prep.varying]
    cov_rz = r2z - r_eff[..., None] * a
    return Values(idx, s, r_eff, var, ava, a, None, None, m_r2 - r_eff**2, ratio[..., _R2ZVZ - 1], cov_rz)


@dataclass(frozen=True, eq=False)
class Base:
    """What a conditional curve S(t | T > s) = S̄(t) / S̄(s) needs at s, per option: event index ``index``
    (-1: before the first event time, i.e. unconditional), S̄ ``s``, r_eff, q̄ and V q̄, the variance of -log S̄
    and sum d/S0² at s."""

    index: int
    s: np.ndarray
    r_eff: np.ndarray
    q: np.ndarray
    vq: np.ndarray
    var: np.ndarray
    vc: float

    @classmethod
    def unconditional(cls, p: int) -> Base:
        zeros = np.zeros(N_OPTIONS)
        return cls(-1, np.ones(N_OPTIONS), zeros, np.zeros((N_OPTIONS, p)), np.zeros((N_OPTIONS, p)), zeros, 0.0)

    @classmethod
    def at(cls, prep: Prepared, values: Values, index: int) -> Base:
        if index < 0:
            return cls.unconditional(len(prep.terms))
        j = int(np.searchsorted(values.idx, index))
        q = values.q(prep, j)
        return cls(index, values.s[:, j], values.r_eff[:, j], q, q @ prep.cov, values.var[:, j], float(prep.vc[index]))


@dataclass(frozen=True, eq=False)
class Curve:
    """The (conditional) curve at ``values.idx``: estimate, bounds, and the variance of its -log."""

    values: Values
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    var: np.ndarray

    def take(self, pos: np.ndarray) -> Curve:
        return Curve(
            self.values.take(pos), self.estimate[:, pos], self.lower[:, pos], self.upper[:, pos], self.var[:, pos]
        )


def curve(prep: Prepared, values: Values, base: Base) -> Curve:
    """S̄(t) / S̄(s) with its log-type 95% interval. Var(-log S(t|s)) = Var(t) - 2 Cov(t, s) + Var(s), where both the
    baseline increments up to s and the coefficients are shared: Cov = r_eff(t) r_eff(s) sum_{i<=s} d/S0² +
    q̄(t)' V q̄(s). Unconditional (s before the first event time): S(s) = 1 and the covariance terms vanish."""
    s = values.s
    var = values.var
    with np.errstate(divide="ignore"):
        log_s = np.log(s)
    if base.index >= 0:
        estimate = s / base.s[:, None]
        q_vs = values.a_dot(base.vq) * prep.hc[values.idx] - values.r_eff * (prep.xc[values.idx] @ base.vq.T).T
        var = np.maximum(var - 2 * (values.r_eff * base.r_eff[:, None] * base.vc + q_vs) + base.var[:, None], 0.0)
        log_s = log_s - np.log(base.s)[:, None]
    else:
        estimate = s
    half = Z_95 * np.sqrt(var)
    return Curve(values, estimate, np.exp(log_s - half), np.exp(np.minimum(0.0, log_s + half)), var)


def _sd_bounds(mix: Mixture, grid: Curve, base: Base) -> tuple[np.ndarray, np.ndarray]:
    """Per option and grid gap (a, b): bounds of the standard deviation of -log S(t|s) over the interior a < i < b.

    The variance is a baseline part plus a beta part, Var = (r_eff(i) - r_eff(s))² vc(s) + r_eff(i)² (vc(i) - vc(s))
    + ||q̄(i) - q̄(s)||²_V (unconditional: s before the first event time, every term at s zero), vc = sum d/S0².

    - baseline: r_eff is non-increasing in t (and r_eff(s) >= r_eff(a) for s <= a), vc non-decreasing, so the
      part lies between its values with r_eff(b), vc(a+1) and with r_eff(a), vc(b-1);
    - beta: the norm moves by at most ||q̄(i) - q̄(a)|| from its value at a, and ||q̄(i) - q̄(b)|| from b. With m
      the gap's mean risk-set covariate, c = r (z - m), Ã = A - r_eff m = E c and Y = XC - m H, q̄ = Ã H - r_eff Y.
      Ã depends on t through H alone, with dÃ/dH = -Cov(r, c) and d²Ã/dH² = E[(r - E r)² (c - E c)], at most
      (max r - min r) sd(r) sd(c) (Cauchy-Schwarz), where inside the gap the weights a_k <= a_k(a) S̄(a) / S̄(b)
      bound both variances by theirs at a times S̄(a) / S̄(b). So with d = H(i) - H(a),
      q̄(i) - q̄(a) = d (Ã(a) - H(a) Cov_a(r, c)) - d² Cov_a(r, c) + H(i) R - (r_eff(i) - r_eff(a)) Y(i)
      - r_eff(a) (Y(i) - Y(a)), ||R|| <= d²/2 (max r - min r) sd(r) sd(c); and the same from b.
    """
    prep = mix.prep
    gaps = prep.gaps
    sides = gaps.sides
    v = grid.values
    r = v.r_eff
    r_a, r_b = r[:, :-1], r[:, 1:]
    r_ab = np.stack([r_a, r_b], axis=1)  # (options, 2, gaps): the values at a and at b side by side
    r_s = base.r_eff[:, None]
    vc_s = base.vc
    p = len(prep.terms)
    with np.errstate(all="ignore"):
        m = gaps.centre
        if len(mix.weights) == 1:
            # One component: Cov(r, c) = 0 and Ã(a) = r (z - m).
            d = mix.r[:, 0, None, None] * (mix.z[:, 0][:, None, :] - m[None])  # (options, gaps, p)
            d_norm = np.sqrt(np.maximum(np.einsum("ogp,pq,ogq->og", d, prep.cov, d), 0.0))
            first = d_norm[:, None, :] * sides["dh"]
        else:
            assert v.a is not None and v.var_r is not None and v.r2zvz is not None and v.cov_rz is not None
            h = prep.hc[v.idx]
            h_a, h_b = h[:-1], h[1:]
            var_r = np.maximum(v.var_r, 0.0)
            # D = P - beta m with P = A - H Cov(r, r z), beta = r_eff - H Var(r); Cov(r, c) = Cov(r, r z) - Var(r) m.
            # Their V-norms expanded: one (points x p) product with V instead of one per gap side.
            cz, a_ = v.cov_rz.reshape(-1, p), v.a.reshape(-1, p)
            czv = cz @ prep.cov
            shape = r.shape
            cvc = np.einsum("np,np->n", czv, cz).reshape(shape)
            avc = np.einsum("np,np->n", czv, a_).reshape(shape)
            pvp = v.ava - 2 * h * avc + h**2 * cvc
            beta = r - h * var_r
            vm, mvm = gaps.v_centre, gaps.m_v_m
            a_vm = np.stack([np.einsum("ogp,gp->og", v.a[:, :-1], vm), np.einsum("ogp,gp->og", v.a[:, 1:], vm)], 1)
            c_vm = np.stack(
                [np.einsum("ogp,gp->og", v.cov_rz[:, :-1], vm), np.einsum("ogp,gp->og", v.cov_rz[:, 1:], vm)], axis=1
            )
            h_ab = np.stack([h_a, h_b])
            p_vm = a_vm - h_ab * c_vm
            beta_ab = np.stack([beta[:, :-1], beta[:, 1:]], axis=1)
            vr_ab = np.stack([var_r[:, :-1], var_r[:, 1:]], axis=1)
            pvp_ab = np.stack([pvp[:, :-1], pvp[:, 1:]], axis=1)
            cvc_ab = np.stack([cvc[:, :-1], cvc[:, 1:]], axis=1)
            d2 = pvp_ab - 2 * beta_ab * p_vm + beta_ab**2 * mvm
            c2 = cvc_ab - 2 * vr_ab * c_vm + vr_ab**2 * mvm
            # Slack for the cancellation in the expansions: 1e-7 of the norm of the terms, far above rounding.
            d_norm = np.sqrt(np.maximum(d2, 0.0)) + 1e-7 * np.sqrt(
                np.abs(pvp_ab) + 2 * np.abs(beta_ab * p_vm) + beta_ab**2 * mvm + 2 * h_ab * np.abs(avc).max()
            )
            c_norm = np.sqrt(np.maximum(c2, 0.0)) + 1e-7 * np.sqrt(cvc_ab + 2 * np.abs(vr_ab * c_vm) + vr_ab**2 * mvm)
            rho = v.s[:, :-1] / v.s[:, 1:]
            # Rounding in the differences is far below the slack added (relative 1e-9 of the raw second moments).
            var_ra = var_r[:, :-1] + 1e-9 * r_a**2
            var_rz = np.maximum(v.r2zvz[:, :-1] - v.ava[:, :-1], 0.0) + 1e-9 * v.r2zvz[:, :-1]
            sd_r = np.minimum(np.sqrt(rho * var_ra), mix.spread[:, None] / 2)
            kappa = sd_r * (np.sqrt(rho * var_rz) + sd_r * sides["sqrt_m_v_m"])
            second = sides["dh"] ** 2 * (c_norm + (gaps.h_hi * mix.spread[:, None] * kappa / 2)[:, None, :])
            first = d_norm * sides["dh"] + second
        move = first + (r_a - r_b)[:, None, :] * gaps.y_hi + r_ab * sides["dy"]
        # The beta part's norm at the grid points: the variance less its baseline part.
        vc = prep.vc[v.idx]
        q_norm = np.sqrt(np.maximum(grid.var - ((r - r_s) ** 2 * vc_s + r**2 * (vc - vc_s)), 0.0))
        q_ab = np.stack([q_norm[:, :-1], q_norm[:, 1:]], axis=1)
        q_hi = (q_ab + move).min(axis=1)
        q_lo = np.maximum((q_ab - move).max(axis=1), 0.0)
        upper = np.sqrt((r_s - r_b) ** 2 * vc_s + r_a**2 * np.maximum(gaps.vc_hi - vc_s, 0.0) + q_hi**2)
        lower = np.sqrt((r_s - r_a) ** 2 * vc_s + r_b**2 * np.maximum(gaps.vc_lo - vc_s, 0.0) + q_lo**2)
    # NaN (from inf - inf where S̄ underflows) never clears a gap: every comparison with it is False.
    return upper, lower


def _ranges(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The integers of every [start, stop), concatenated."""
    lengths = stop - start
    ends = np.cumsum(lengths)
    return np.arange(ends[-1]) - np.repeat(ends - lengths, lengths) + np.repeat(start, lengths)


def first_crossings(mix: Mixture, grid: Curve, base: Base, known: Curve) -> tuple[np.ndarray, Curve | None]:
    """Event index of the first time after s at which the estimate, the lower and the upper curve are at or below
    0.5 (options, 3; -1 where never), and the curve at the event times evaluated to find them (None: none needed).

    ``grid`` is the curve on the model's grid, ``known`` the curve at other event times already evaluated. A gap
    (a, b) of the grid is evaluated event time by event time unless the curve
    provably stays above 0.5 inside it: the estimate, because it is at least its value at b; the bounds, because
    inside the gap C >= C(b) and the standard deviation of -log C lies within ``_sd_bounds``.
    """
    prep = mix.prep
    found = _earliest(first_at_or_below(grid, base.index), first_at_or_below(known, base.index))
    a, b = prep.grid[:-1], prep.grid[1:]
    c_b = grid.estimate[:, 1:]
    sd_hi, sd_lo = _sd_bounds(mix, grid, base)
    threshold = 0.5 * (1 + MARGIN)
    with np.errstate(all="ignore"):
        clear = np.stack(
            [c_b > threshold, c_b * np.exp(-Z_95 * sd_hi) > threshold, c_b * np.exp(Z_95 * sd_lo) > threshold], axis=1
        )  # (options, 3, gaps)
    # Gaps before s do not count; the one holding s is evaluated (its value at a is not on the conditional curve).
    clear &= (a >= base.index)[None, None, :]
    start = np.maximum(a + 1, base.index + 1)
    limit = np.where(found < 0, len(prep.times), found)  # (options, 3)
    todo = prep.gaps.interior & (b - 1 > base.index) & ~clear & (start[None, None, :] < limit[..., None])
    chosen = np.flatnonzero(todo.any(axis=(0, 1)))
    if not chosen.size:
        return found, None
    extra = _ranges(start[chosen], b[chosen])
    have = known.values.idx
    if len(have):
        extra = extra[have[np.minimum(np.searchsorted(have, extra), len(have) - 1)] != extra]
    if not extra.size:
        return found, None
    more_curve = curve(prep, evaluate(mix, extra), base)
    return _earliest(found, first_at_or_below(more_curve, base.index)), more_curve


def _earliest(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise the earlier of two event indices, -1 meaning never."""
    return np.where((y >= 0) & ((x < 0) | (y < x)), y, x)


def first_at_or_below(c: Curve, after: int) -> np.ndarray:
    """Per option and curve (estimate, lower, upper): the first event index > ``after`` among ``c``'s with the
    curve at or below 0.5; -1 if none."""
    idx = c.values.idx
    if not len(idx):
        return np.full((N_OPTIONS, 3), -1)
    below = np.stack([c.estimate, c.lower, c.upper], axis=1) <= 0.5  # (options, 3, n)
    if after >= 0:
        below &= idx > after
    hit = below.any(axis=2)
    return np.where(hit, idx[np.argmax(below, axis=2)], -1)


# --- RMST ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rmst:
    """RMST up to ``tau`` per option: ``estimate`` (options,), ``gradient`` (options, p) in beta and the baseline
    part of the covariance between options ``baseline`` (options, options)."""

    tau: float
    estimate: np.ndarray
    gradient: np.ndarray
    baseline: np.ndarray

    def variances(self, prep: Prepared) -> np.ndarray:
        """Per option."""
        g = self.gradient
        return np.diagonal(self.baseline) + ((g @ prep.cov) * g).sum(axis=1)

    def difference_variances(self, prep: Prepared, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Of each difference a - b (option index arrays)."""
        g = self.gradient[a] - self.gradient[b]
        bl = self.baseline
        return bl[a, a] + bl[b, b] - 2 * bl[a, b] + ((g @ prep.cov) * g).sum(axis=1)


def _steps(prep: Prepared, tau: float) -> tuple[int, np.ndarray, float]:
    """Event times <= tau, the widths of the steps they start (S(t_j) holds on [t_j, t_j+1)), and the time before
    the first event time (S = 1)."""
    times = prep.times
    n = int(np.searchsorted(times, tau, side="right"))
    return n, np.diff(np.append(times[:n], tau)), float(times[0] if n else tau)


def rmst(mix: Mixture, tau: float) -> Rmst:
    """RMST of each option's mixture up to tau: from the model's tables at the default horizon, else exactly."""
    prep = mix.prep
    block = (
        rmst_block(prep, dict(zip(prep.rmst_keys, mix.key, strict=True)))
        if tau == prep.rmst_tau and mix.key is not None and prep.rmst_keys is not None
        else None
    )
    if block is None:
        return rmst_exact(mix, tau)
    _, _, first = _steps(prep, tau)
    p_count = len(prep.patterns.levels)
    # The weights over every (option, pattern) component of the block, one row per option.
    w = np.zeros((N_OPTIONS, N_OPTIONS * p_count))
    w[np.arange(N_OPTIONS)[:, None], np.arange(N_OPTIONS)[:, None] * p_count + mix.which] = mix.weights
    estimate = first + block.area.reshape(-1) @ w.T
    gradient = w @ block.gradient.reshape(-1, len(prep.terms))
    return Rmst(tau, estimate, gradient, w @ block.gram @ w.T)


def rmst_exact(mix: Mixture, tau: float) -> Rmst:
    """RMST over every event time up to tau (any horizon): c_i = sum_k w_k r_k * integral of S_k from t_i to tau,
    g = d RMST / d beta up to sign (the computation the tables hold per component)."""
    prep = mix.prep
    n, widths, first = _steps(prep, tau)
    if n == 0:
        zeros = np.zeros(N_OPTIONS)
        return Rmst(tau, zeros + first, np.zeros((N_OPTIONS, len(prep.terms))), np.zeros((N_OPTIONS, N_OPTIONS)))
    ws = np.exp(np.multiply.outer(prep.hc[:n], -mix.r.reshape(-1))).reshape(n, N_OPTIONS, -1) * mix.weights
    s = ws.sum(axis=2)  # (n, options)
    wrs = np.einsum("nok,ok->on", ws, mix.r)
    area = wrs * widths
    c = np.cumsum(area[:, ::-1], axis=1)[:, ::-1]
    f1 = np.einsum("nok,n->ok", ws, prep.hc[:n] * widths) * mix.r
    gradient = np.einsum("ok,okp->op", f1, mix.z) - area @ prep.xc[:n]
    dv = np.diff(np.concatenate([[0.0], prep.vc[:n]]))
    return Rmst(tau, first + widths @ s, gradient, (c * dv) @ c.T)


def rmst_block(prep: Prepared, key: dict[str, str]) -> RmstBlock | None:
    """The RMST tables of one combination of the required covariates at the default horizon (built on first use,
    kept within RMST_TABLE_BUDGET); None when the model has none."""
    if prep.rmst_keys is None or prep.rmst_tau is None:
        return None
    k = tuple(key[name] for name in prep.rmst_keys)
    block = prep.rmst_blocks.get(k)
    if block is not None:
        return block
    built = _build_block(prep, key)
    with prep.rmst_lock:
        if (
            k not in prep.rmst_blocks
            and sum(b.nbytes for b in prep.rmst_blocks.values()) + built.nbytes <= RMST_TABLE_BUDGET
        ):
            prep.rmst_blocks[k] = built
    return built


def _build_block(prep: Prepared, key: dict[str, str]) -> RmstBlock:
    assert prep.rmst_tau is not None
    n, widths, _ = _steps(prep, prep.rmst_tau)
    p_count, p = len(prep.patterns.levels), len(prep.terms)
    z = (prep.parts.other_rows(key)[:, None, :] * prep.parts.pattern_factor[None, :, :]).reshape(-1, p)
    r = np.exp(z @ prep.coef)
    e = np.exp(np.multiply.outer(-r, prep.hc[:n]))  # (components, n): S_c(t_j)
    ew = e * widths
    area = ew.sum(axis=1)
    f1 = ew @ prep.hc[:n]
    f2 = ew @ prep.xc[:n]
    gradient = r[:, None] * (z * f1[:, None] - f2)
    c = r[:, None] * np.cumsum(ew[:, ::-1], axis=1)[:, ::-1]
    dv = np.diff(np.concatenate([[0.0], prep.vc[:n]]))
    gram = (c * dv) @ c.T
    return RmstBlock(area.reshape(N_OPTIONS, p_count), gradient.reshape(N_OPTIONS, p_count, p), gram)
