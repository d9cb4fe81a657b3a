"""The normal quantile of every two-sided 95% interval in the project: Wald tables, survival bands, differences."""

from scipy.stats import norm

Z_95 = float(norm.ppf(0.975))
