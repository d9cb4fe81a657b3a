"""Where a patient's medians and their confidence limits can be, so that only those event times are evaluated.

A median is the first event time after s (0 unconditional) at which the curve, or its lower or upper 95% limit, is
at or below 0.5. The curve is evaluated on the model's grid (``prognosis.prepared``); a gap (a, b) between grid points
is then evaluated event time by event time unless the curve provably stays above 0.5 inside it:

- the estimate is monotone, so inside a gap it is at least its value at b: only the gap before the first grid point
  at or below 0.5 can hold its median;
- the limits S exp(-+ z sd) are not monotone. Inside a gap S >= S(b), and the standard deviation of -log S lies within
  bounds computed from the grid points (``sd_bounds``): a gap is skipped only when those prove the limit stays above
  0.5 (by a relative margin far above rounding).

Every other gap before the first grid point at or below 0.5 is evaluated, so the first crossing among the evaluated
event times is the first crossing among all of them.
"""

from __future__ import annotations

import numpy as np

from prognosis.mixture import Base, Curve, Mixture, Values
from prognosis.normal import Z_95

# A gap is skipped only when its bound clears 0.5 by more than this (relative), far above rounding.
MARGIN = 1e-9
# The slack added to the bounds' norms, relative to the size of the terms of their expansion: 1e-7 (times sqrt(2),
# the sum of the terms being at most twice the two outer ones), far above rounding.
SLACK = 1e-7 * np.sqrt(2.0)


def first_at_or_below(idx: np.ndarray, bands: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per curve (estimate, lower, upper), endpoint and option: the first event index > ``after`` (endpoints, 1)
    among ``idx`` (endpoints, n) with the curve at or below 0.5; -1 if none. (3, endpoints, options)."""
    below = (bands <= 0.5) & (idx > after)[:, None, :]
    first = idx[np.arange(len(idx))[:, None], below.argmax(axis=-1)]
    return np.where(below.any(axis=-1), first, -1)


def gap_points(mix: Mixture, grid: Curve, base: Base) -> np.ndarray:
    """The event indices off the grid at which some option's curve or limits can first be at or below 0.5, per
    endpoint (endpoints, n; padded with the sentinel): the interior of every gap that is not cleared (see the module
    docstring) and does not start at or after the first grid point at or below 0.5, for any option and curve; after
    s only (a gap that holds s is not cleared: its value at a is not on the conditional curve)."""
    prep = mix.prep
    a = prep.grid[:, :-1]
    after = base.after
    sd_hi, sd_lo = sd_bounds(mix, grid, base)
    with np.errstate(all="ignore"):
        factor = np.exp(np.stack([np.zeros_like(sd_hi), -Z_95 * sd_hi, Z_95 * sd_lo]))
        clear = grid.bands[0][..., 1:] * factor > 0.5 * (1 + MARGIN)  # (3, endpoints, options, gaps)
    if base.index is not None:
        clear &= (a >= after)[:, None, :]
    found = first_at_or_below(prep.grid, grid.bands, after)
    limit = np.where(found < 0, prep.sentinel, found)
    todo = (~clear & (a[:, None, :] + 1 < limit[..., None])).any(axis=(0, 2)) & prep.gaps.interior[:, 0]
    # The chosen gaps' interior event indices (after s), one row per endpoint.
    chosen = todo[np.arange(len(a))[:, None], prep.inside_gap]
    if base.index is not None:
        chosen &= prep.inside > after
    e, j = np.nonzero(chosen)
    counts = np.bincount(e, minlength=len(a))
    out = np.full((len(a), counts.max(initial=0)), prep.sentinel)
    out[e, np.arange(len(e)) - (np.cumsum(counts) - counts)[e]] = prep.inside[e, j]
    return out


def sd_bounds(mix: Mixture, grid: Curve, base: Base) -> tuple[np.ndarray, np.ndarray]:
    """Per endpoint, option and grid gap (a, b): bounds of the standard deviation of -log S(t|s) over the interior
    a < i < b, (upper, lower), each (endpoints, options, gaps).

    The variance is a baseline part plus a beta part, Var = (r_eff(i) - r_eff(s))² vc(s) + r_eff(i)² (vc(i) - vc(s))
    + ||q̄(i) - q̄(s)||²_V (unconditional: s before the first event time, every term at s zero), vc = sum d/S0².

    - baseline: r_eff is non-increasing in t (and r_eff(s) >= r_eff(a) for s <= a), vc non-decreasing, so the
      part lies between its values with r_eff(b), vc(a+1) and with r_eff(a), vc(b-1);
    - beta: with the gap's mean risk-set covariate m, c = r (z - m), Ã = E c and Y = XC - m H, q̄ = Ã H - r_eff Y,
      where F = Ã H depends on t through H alone and Y(a) = Y(b). So q̄(i) is within R of the segment between q̄(a)
      and q̄(b) (linear interpolation in H): R = (H(b) - H(a))²/8 max ||F''|| + r_eff(a) ||Y(i) - Y(a)|| +
      (r_eff(a) - r_eff(b)) ||Y(a)||. F'' = 2 dÃ/dH + H d²Ã/dH² with dÃ/dH = -Cov(r, c) and d²Ã/dH² =
      E[(r - E r)² (c - E c)], so ||F''|| <= sd(r) sd(c) (2 + H(b) (max r - min r)) (Cauchy-Schwarz), where inside the
      gap the weights a_k <= a_k(a) S̄(a) / S̄(b) bound both variances by theirs at a times S̄(a) / S̄(b), and
      sd(c) <= sd(r z) + sd(r) ||m||. The norm along the segment lies between its minimum and the larger end.

    With one component (every input known) the covariances vanish and R = r ||Y(i) - Y(a)||.
    """
    prep, v, comb = mix.prep, grid.values, mix.comb
    gaps = prep.gaps
    assert v.quad is not None and v.scale is not None and v.gy is not None and v.ava is not None
    assert v.m_r2 is not None and v.r2zvz is not None
    r, y, b_coords = v.r_eff, v.y, comb.grid_b
    r_a, r_b = r[..., :-1], r[..., 1:]
    r_s, vc_s = base.r_eff[..., None], base.vc
    with np.errstate(all="ignore"):
        # ||q̄ - q̄(s)||² at the grid points and (q̄(a) - q̄(s))' V (q̄(b) - q̄(s)) per gap, from A's coordinates: with
        # u = basis V q̄ = H gram y - r_eff basis V XC,
        # q̄(a)' V q̄(b) = H_a y_a.u_b - r_a (H_b XC_a'V A_b - r_b XC_a'V XC_b).
        u = v.gy * prep.grid_rows[0][:, :, None, :] - b_coords * r[:, :, None, :]
        ends = v.quad
        cross = gaps.h_a * np.einsum("eoig,eoig->eog", y[..., :-1], u[..., 1:])
        cross -= r_a * (gaps.h_b * np.einsum("eoig,eoig->eog", b_coords[..., :-1], y[..., 1:]) - r_b * gaps.xvx)
        if base.index is not None:
            assert grid.q_vs is not None
            qvq = (base.q * base.vq).sum(axis=-1)[..., None]
            ends = ends - 2 * grid.q_vs + qvq
            cross += qvq - grid.q_vs[..., :-1] - grid.q_vs[..., 1:]
        n_a, n_b = ends[..., :-1], ends[..., 1:]
        # The smallest norm on the segment: at lam = (n_a - cross) / ||q̄(b) - q̄(a)||², clipped to [0, 1].
        step = n_a + n_b - 2 * cross
        lam = np.clip((n_a - cross) / np.maximum(step, 1e-300), 0.0, 1.0)
        nearest = n_a - lam * (2 * (n_a - cross) - lam * step)
        reach = remainder(mix, v) + SLACK * np.sqrt(np.maximum(v.scale[..., :-1], v.scale[..., 1:]))
        q_hi = np.sqrt(np.maximum(n_a, n_b)) + reach
        q_lo = np.maximum(np.sqrt(np.maximum(nearest, 0.0)) - reach, 0.0)
        # The baseline part's bounds (unconditional: every term at s zero).
        if base.index is None:
            base_hi, base_lo = r_a**2 * gaps.vc_hi, r_b**2 * gaps.vc_lo
        else:
            base_hi = (r_s - r_b) ** 2 * vc_s + r_a**2 * np.maximum(gaps.vc_hi - vc_s, 0.0)
            base_lo = (r_s - r_a) ** 2 * vc_s + r_b**2 * np.maximum(gaps.vc_lo - vc_s, 0.0)
        upper, lower = np.sqrt(base_hi + q_hi**2), np.sqrt(base_lo + q_lo**2)
    # NaN (from inf - inf where S̄ underflows) never clears a gap: every comparison with it is False.
    return upper, lower


def remainder(mix: Mixture, v: Values) -> np.ndarray:
    """R per endpoint, option and gap (see ``sd_bounds``): how far q̄ at an interior event time can be from the
    segment between q̄(a) and q̄(b), from the moments on the grid ``v``. The weights' variances inside the gap are at
    most theirs at a times S̄(a) / S̄(b); rounding in the differences is far below the 1e-9 relative added."""
    gaps, r = mix.prep.gaps, v.r_eff
    assert v.m_r2 is not None and v.r2zvz is not None and v.ava is not None
    r_a, r_b = r[..., :-1], r[..., 1:]
    with np.errstate(all="ignore"):
        rho = v.s[..., :-1] / v.s[..., 1:]
        sd_r = np.minimum(np.sqrt(rho * (v.m_r2[..., :-1] - (1 - 1e-9) * r_a * r_a)), mix.spread / 2)
        r2zvz = v.r2zvz[..., :-1]
        sd_rz = np.sqrt(rho * np.maximum((1 + 1e-9) * r2zvz - v.ava[..., :-1], 1e-9 * r2zvz))
        curvature = sd_r * (sd_rz + sd_r * gaps.root_m_v_m) * (2 + gaps.h_b * mix.spread)
        return gaps.dh2_8 * curvature + r_a * gaps.dy + (r_a - r_b) * gaps.y_a
