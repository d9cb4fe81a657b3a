# External validation's smoothed calibration from R (survival + rms), for tests/test_validate_r.py. Run from the
# repository root (after tests/data/r_validate_data.py):
#   Rscript tests/data/r_validate_external.R [design.csv output-prefix]
# For each endpoint: coxph (Efron ties) on the training registry's design; each validation patient's cumulative hazard
# at 12, 24 and 36 months from survfit(fit, newdata, ctype = 1) (the Breslow baseline the calculator serves); then, as
# Austin, Harrell & van Klaveren (Stat Med 2020) do, cph(Surv(time, event) ~ rcs(cll, 3)) on the validation registry
# with cll = log(cumulative hazard), observed risk 1 - survest(..., times = t0)$surv, and ICI, E50, E90, Emax of
# |predicted - observed|, observed/expected = Kaplan-Meier risk / mean predicted risk; the curve and its 95% band on
# 50 predicted risks spanning the predictions. Convergence criteria are tightened so that the comparison measures
# the method, not where Newton-Raphson stopped.
# Writes <prefix>_values.csv and <prefix>_curve.csv (default prefix tests/data/r_validate_external).
suppressMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
input <- if (length(args) >= 1) args[1] else "tests/data/r_validate_external_design.csv"
prefix <- if (length(args) >= 2) args[2] else "tests/data/r_validate_external"
d <- read.csv(input, stringsAsFactors = FALSE)
xs <- grep("^x[0-9]+$", names(d), value = TRUE)
values <- list(); curves <- list(); coefs <- list()
for (ep in c("hpfs", "os")) {
  tr <- d[d$dataset == "train" & d$endpoint == ep, ]
  te <- d[d$dataset == "test" & d$endpoint == ep, ]
  model <- coxph(as.formula(paste("Surv(time, event) ~", paste(xs, collapse = " + "))), data = tr, ties = "efron",
                 control = coxph.control(eps = 1e-11, iter.max = 100))
  coefs[[ep]] <- data.frame(endpoint = ep, term = xs, coef = unname(coef(model)))
  sf <- survfit(model, newdata = te, ctype = 1)
  for (t0 in c(12, 24, 36)) {
    H <- as.numeric(summary(sf, times = t0)$cumhaz)
    risk <- -expm1(-H)
    te$cll <- log(H)
    cal <- cph(Surv(time, event) ~ rcs(cll, 3), data = te, x = TRUE, y = TRUE, surv = TRUE, eps = 1e-10,
               tol = 1e-13, iter.max = 100)
    obs <- 1 - survest(cal, newdata = te, times = t0)$surv
    diff <- abs(risk - obs)
    km <- summary(survfit(Surv(time, event) ~ 1, data = te), times = t0)$surv
    knots <- cal$Design$parms$cll
    values[[paste(ep, t0)]] <- data.frame(endpoint = ep, months = t0, n = nrow(te), events = sum(te$event),
      ici = mean(diff), e50 = median(diff), e90 = unname(quantile(diff, 0.9)), emax = max(diff),
      observed_expected = (1 - km) / mean(risk), km_risk = 1 - km, mean_predicted = mean(risk),
      knot1 = knots[1], knot2 = knots[2], knot3 = knots[3])
    grid <- seq(min(risk), max(risk), length.out = 50)
    est <- survest(cal, newdata = data.frame(cll = log(-log1p(-grid))), times = t0)
    curves[[paste(ep, t0)]] <- data.frame(endpoint = ep, months = t0, predicted = grid, observed = 1 - est$surv,
                                          ci_lower = 1 - est$upper, ci_upper = 1 - est$lower)
  }
}
full <- function(df) { for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]]); df }
write.csv(full(do.call(rbind, values)), paste0(prefix, "_values.csv"), row.names = FALSE, quote = FALSE)
write.csv(full(do.call(rbind, curves)), paste0(prefix, "_curve.csv"), row.names = FALSE, quote = FALSE)
write.csv(full(do.call(rbind, coefs)), paste0(prefix, "_coef.csv"), row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "rms", as.character(packageVersion("rms")), "survival",
    as.character(packageVersion("survival")), "\n")
