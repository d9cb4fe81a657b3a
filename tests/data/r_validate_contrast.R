# Differences in predicted survival between treatment options, with delta-method 95% intervals, from R's survival,
# for tests/test_validate_r.py (the intervals of prognosis.scoring's contrasts). Run from the repository root (after
# tests/data/r_validate_data.py):
#   Rscript tests/data/r_validate_contrast.R [design.csv patients.csv output.csv]
# coxph (no tied event times: Breslow = Efron) per endpoint on the registry's design. For patients a and b (one
# patient under two options) the Breslow cumulative hazards H_a, H_b share the baseline and the coefficients:
#   Cov(H_a, H_b)(t) = r_a r_b sum_{t_i <= t} d_i / S0_i^2 + q_a' V q_b,  q_z = r_z sum_{t_i <= t} (z - xbar_i) d_i / S0_i
# (Therneau & Grambsch 2000, section 10.2; S0, xbar from the risk sets, V = vcov(fit)); with a = b this is
# survfit.coxph's variance, and the script stops unless it equals survfit's std.err^2 for every patient (1e-8
# relative). Var(S_a - S_b) = S_a^2 Var H_a + S_b^2 Var H_b - 2 S_a S_b Cov(H_a, H_b); interval = difference
# +/- 1.959964 SE, cut to [-1, 1].
suppressMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
design_file <- if (length(args) >= 1) args[1] else "tests/data/r_validate_contrast_design.csv"
patients_file <- if (length(args) >= 2) args[2] else "tests/data/r_validate_contrast_patients.csv"
output <- if (length(args) >= 3) args[3] else "tests/data/r_validate_contrast_values.csv"
design <- read.csv(design_file, stringsAsFactors = FALSE)
patients <- read.csv(patients_file, stringsAsFactors = FALSE)
xs <- grep("^x[0-9]+$", names(design), value = TRUE)
horizons <- c(12, 24, 36)
options <- c("TACE", "SIRT", "TAE")
comparisons <- list(c("SIRT", "TACE"), c("TAE", "TACE"), c("SIRT", "TAE"))
rows <- list()
for (ep in c("hpfs", "os")) {
  d <- design[design$endpoint == ep, ]
  fit <- coxph(as.formula(paste("Surv(time, event) ~", paste(xs, collapse = " + "))), data = d, ties = "breslow",
               control = coxph.control(eps = 1e-11, iter.max = 100))
  beta <- coef(fit); V <- vcov(fit); X <- as.matrix(d[, xs]); w <- exp(drop(X %*% beta))
  times <- sort(unique(d$time[d$event == 1]))
  dk <- sapply(times, function(t) sum(d$time == t & d$event == 1))
  s0 <- sapply(times, function(t) sum(w[d$time >= t]))
  xbar <- t(sapply(times, function(t) colSums(X[d$time >= t, , drop = FALSE] * w[d$time >= t]))) / s0
  pieces <- function(z, t0) {  # H, r-free parts at t0 for patient row z
    k <- times <= t0
    r <- exp(sum(z * beta))
    list(H = r * sum(dk[k] / s0[k]), r = r, q = r * colSums((matrix(z, sum(k), length(z), byrow = TRUE) -
                                                            xbar[k, , drop = FALSE]) * dk[k] / s0[k]),
         base = sum(dk[k] / s0[k]^2))
  }
  covariance <- function(a, b) a$r * b$r * a$base + drop(t(a$q) %*% V %*% b$q)
  for (p in unique(patients$patient)) {
    z <- lapply(options, function(o) as.numeric(patients[patients$patient == p & patients$option == o, xs]))
    names(z) <- options
    nd <- as.data.frame(do.call(rbind, z)); names(nd) <- xs
    sf <- survfit(fit, newdata = nd, ctype = 1, se.fit = TRUE)
    for (t0 in horizons) {
      pc <- lapply(z, pieces, t0 = t0)
      s <- summary(sf, times = t0)
      # R's own variance of each curve's cumulative hazard: the formula above with a = b must give it.
      own <- as.numeric(s$std.err / s$surv)^2
      ours <- sapply(options, function(o) covariance(pc[[o]], pc[[o]]))
      stopifnot(max(abs(ours / own - 1)) < 1e-8, max(abs(exp(-sapply(pc, `[[`, "H")) / as.numeric(s$surv) - 1)) < 1e-10)
      for (cmp in comparisons) {
        a <- pc[[cmp[1]]]; b <- pc[[cmp[2]]]
        sa <- exp(-a$H); sb <- exp(-b$H)
        v <- sa^2 * covariance(a, a) + sb^2 * covariance(b, b) - 2 * sa * sb * covariance(a, b)
        est <- sa - sb; se <- sqrt(v)
        rows[[length(rows) + 1]] <- data.frame(endpoint = ep, patient = p, a = cmp[1], b = cmp[2], months = t0,
          estimate = est, se = se, ci_lower = max(-1, est - 1.959963984540054 * se),
          ci_upper = min(1, est + 1.959963984540054 * se), baseline_variance_share = (sa * a$r - sb * b$r)^2 * a$base / v)
      }
    }
  }
}
full <- function(df) { for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]]); df }
write.csv(full(do.call(rbind, rows)), output, row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "\n")
