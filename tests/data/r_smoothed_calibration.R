# Reference smoothed calibration (Austin, Harrell & van Klaveren, Stat Med 2020;39:2714) from R's rms for
# tests/test_smoothed_calibration.py. Run from the repository root (after r_smoothed_calibration_data.py):
#   Rscript tests/data/r_smoothed_calibration.R [input.csv output-prefix]
# writes <prefix>_values.csv, <prefix>_observed.csv, <prefix>_curve.csv (default prefix
# tests/data/r_smoothed_calibration). As in the paper's code: cph on rcs(cll, 3) with Efron ties (cph's default),
# observed risk 1 - survest(..., times = t0)$surv. cph's convergence criterion is tightened from eps = 1e-4 to 1e-10
# so that the comparison measures the method, not where Newton-Raphson stopped.
suppressMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
input <- if (length(args) >= 1) args[1] else "tests/data/r_smoothed_calibration_input.csv"
prefix <- if (length(args) >= 2) args[2] else "tests/data/r_smoothed_calibration"
all <- read.csv(input, stringsAsFactors = FALSE)
values <- list(); observed <- list(); curves <- list()
for (name in unique(all$dataset)) {
  d <- all[all$dataset == name, ]
  t0 <- d$horizon[1]
  d$cll <- log(-log(1 - d$risk))
  fit <- cph(Surv(time, event) ~ rcs(cll, 3), data = d, x = TRUE, y = TRUE, surv = TRUE, eps = 1e-10, tol = 1e-13, iter.max = 100)
  obs <- 1 - survest(fit, newdata = d, times = t0)$surv
  diff <- abs(d$risk - obs)
  km <- summary(survfit(Surv(time, event) ~ 1, data = d), times = t0)$surv
  knots <- fit$Design$parms$cll
  values[[name]] <- data.frame(dataset = name, horizon = t0, ici = mean(diff), e50 = median(diff),
    e90 = unname(quantile(diff, 0.9)), emax = max(diff), km_risk = 1 - km, mean_predicted = mean(d$risk),
    observed_expected = (1 - km) / mean(d$risk), knot1 = knots[1], knot2 = knots[2], knot3 = knots[3],
    coef1 = unname(coef(fit)[1]), coef2 = unname(coef(fit)[2]))
  observed[[name]] <- data.frame(dataset = name, row = seq_len(nrow(d)), observed = obs)
  grid <- seq(min(d$risk), max(d$risk), length.out = 50)
  est <- survest(fit, newdata = data.frame(cll = log(-log(1 - grid))), times = t0)
  curves[[name]] <- data.frame(dataset = name, predicted = grid, observed = 1 - est$surv,
                               ci_lower = 1 - est$upper, ci_upper = 1 - est$lower)
}
# All 17 significant digits (write.csv keeps 15).
full <- function(df) { for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]]); df }
write.csv(full(do.call(rbind, values)), paste0(prefix, "_values.csv"), row.names = FALSE, quote = FALSE)
write.csv(full(do.call(rbind, observed)), paste0(prefix, "_observed.csv"), row.names = FALSE, quote = FALSE)
write.csv(full(do.call(rbind, curves)), paste0(prefix, "_curve.csv"), row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "rms", as.character(packageVersion("rms")), "survival",
    as.character(packageVersion("survival")), "\n")
