# Every measure of the validation bootstrap, replicate by replicate, from R (survival + rms) on the resamples the
# validation draws, for tests/test_validate_r.py. Run from the repository root (after tests/data/r_validate_data.py):
#   Rscript tests/data/r_validate_replicates.R [input.csv indices.csv output.csv [replicates]]
# For each resample (r_validate_bootstrap_indices.csv, 1-based rows) and each way of building the model:
#   refit:  coxph (Efron) refitted on the resample;
#   shrunk: the same coefficients times 0.8, Breslow baseline re-estimated for the shrunk linear predictor;
# the measures of training/bootstrap.py: Harrell's C (concordance(..., reverse = TRUE)) of the rebuilt model on the
# resample and on the original data, of the validated model (built the same way on the original data) on the resample;
# the calibration slope (coxph on the linear predictor) of the rebuilt model on the resample and on the original data
# (on the resample 1 for the refit, 1 / 0.8 for the shrunk one); and at 12, 24 and
# 36 months the smoothed calibration (cph on rcs(log cumulative hazard, 3), survest; ICI, E50, E90, Emax,
# observed/expected) of the rebuilt model on the resample and on the original data. Cumulative hazards use the
# Breslow baseline (survfit ctype = 1), as the calculator serves.
suppressMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
input <- if (length(args) >= 1) args[1] else "tests/data/r_validate_bootstrap_input.csv"
index_file <- if (length(args) >= 2) args[2] else "tests/data/r_validate_bootstrap_indices.csv"
output <- if (length(args) >= 3) args[3] else "tests/data/r_validate_replicates_values.csv"
count <- if (length(args) >= 4) as.integer(args[4]) else Inf  # the first `count` replicates only
d <- read.csv(input)
idx <- read.csv(index_file)
xs <- grep("^x[0-9]+$", names(d), value = TRUE)
horizons <- c(12, 24, 36)
formula <- as.formula(paste("Surv(time, event) ~", paste(xs, collapse = " + ")))
control <- coxph.control(eps = 1e-11, iter.max = 100)

# Breslow cumulative hazard at the horizons (rows) for the rows of `new` of the Cox model with coefficients `coef`, its
# baseline estimated on `data`: coxph held at `coef` (init, no iteration) and survfit(..., ctype = 1).
cumhaz <- function(data, coef, new) {
  held <- coxph(formula, data = data, ties = "efron", init = coef, control = coxph.control(iter.max = 0),
                model = TRUE, x = TRUE)
  sf <- survfit(held, newdata = new, ctype = 1)
  matrix(summary(sf, times = horizons)$cumhaz, nrow = length(horizons))
}
smoothed <- function(data, H, t0) {
  risk <- -expm1(-H)
  data$cll <- log(H)
  cal <- cph(Surv(time, event) ~ rcs(cll, 3), data = data, x = TRUE, y = TRUE, surv = TRUE, eps = 1e-10,
             tol = 1e-13, iter.max = 100)
  diff <- abs(risk - (1 - survest(cal, newdata = data, times = t0)$surv))
  km <- summary(survfit(Surv(time, event) ~ 1, data = data), times = t0)$surv
  c(ici = mean(diff), e50 = median(diff), e90 = unname(quantile(diff, 0.9)), emax = max(diff),
    observed_expected = (1 - km) / mean(risk))
}
harrell <- function(data, lp) {
  data$lp <- lp
  concordance(Surv(time, event) ~ lp, data = data, reverse = TRUE)$concordance
}
slope <- function(data, lp) {
  data$lp <- lp
  unname(coef(coxph(Surv(time, event) ~ lp, data = data, control = control)))
}
lin <- function(data, coef) as.vector(as.matrix(data[, xs]) %*% coef)

full_coef <- coef(coxph(formula, data = d, ties = "efron", control = control))
rows <- list()
for (r in head(sort(unique(idx$replicate)), count)) {
  s <- d[idx$row[idx$replicate == r], ]
  refit <- coef(coxph(formula, data = s, ties = "efron", control = control))
  for (build in c("refit", "shrunk")) {
    factor <- if (build == "shrunk") 0.8 else 1
    beta <- refit * factor
    model <- full_coef * factor
    row <- list(replicate = r, build = build,
                c_refit_on_sample = harrell(s, lin(s, beta)), c_refit_on_original = harrell(d, lin(d, beta)),
                slope_refit_on_original = slope(d, lin(d, beta)), c_model_on_sample = harrell(s, lin(s, model)),
                slope_refit_on_sample = slope(s, lin(s, beta)))
    H_sample <- cumhaz(s, beta, s)
    H_original <- cumhaz(s, beta, d)
    for (i in seq_along(horizons)) {
      t0 <- horizons[i]
      for (part in list(list("refit_on_sample", s, H_sample[i, ]), list("refit_on_original", d, H_original[i, ]))) {
        m <- smoothed(part[[2]], part[[3]], t0)
        for (name in names(m)) row[[paste0(name, "_", t0, "_", part[[1]])]] <- unname(m[name])
      }
    }
    rows[[length(rows) + 1]] <- as.data.frame(row)
  }
}
full <- function(df) { for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]]); df }
write.csv(full(do.call(rbind, rows)), output, row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "rms", as.character(packageVersion("rms")), "survival",
    as.character(packageVersion("survival")), "\n")
