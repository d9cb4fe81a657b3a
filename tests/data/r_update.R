# Reference values for model updating (tests/test_update.py) and shrinkage (tests/test_shrinkage.py).
# Run from the repository root after `.venv/bin/python -m tests.data.update_data`:
#   Rscript tests/data/r_update.R   (writes tests/data/r_update_values.csv and tests/data/r_update_baselines.csv)
#
# The closed test's three components, computed as a reader would with glm and coxph:
# - original -> baseline: Poisson GLM of the events (up to the base model's last event time tau) with offset
#   log(H_i), H_i = Lambda0(min(t_i, tau)) exp(lp_i) from the base model's Breslow baseline; deviance of the model
#   without intercept minus that with one;
# - baseline -> recalibration: coxph(Surv ~ lp) against coxph(Surv ~ offset(lp)) (Efron ties), twice the loglik gain;
# - recalibration -> refit: coxph with the 19 terms against coxph(Surv ~ lp).
# Breslow baselines with an offset: survfit(coxph(Surv ~ offset(...)), newdata = offset 0, ctype = 1).
# Shrinkage: rms::validate(cph(...), B = 1000)'s optimism-corrected "Slope". D2: mitml's internal .D2 on each
# completed data set's chi-square statistics; Rubin's rules for the slope: mice::pool.
suppressMessages({library(survival); library(rms); library(mice); library(mitml)})
source("tests/data/r_terms.R")  # terms(d): the model's 19 terms as columns
ctl <- coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100)
base <- read.csv("tests/data/update_base.csv")
haz <- read.csv("tests/data/update_base_hazard.csv")
tau <- max(haz$time)
lambda0 <- stepfun(haz$time, c(0, haz$cum_hazard))  # right-continuous step function

components <- function(d) {
  x <- terms(d)
  time <- d$os_months; event <- d$os_event
  lp <- as.vector(as.matrix(x) %*% base$coef)
  h <- lambda0(pmin(time, tau)) * exp(lp)
  observed <- event * (time <= tau)
  g0 <- glm(observed ~ -1 + offset(log(h)), family = poisson)
  g1 <- glm(observed ~ 1 + offset(log(h)), family = poisson)
  f_offset <- coxph(Surv(time, event) ~ offset(lp), ties = "efron")
  f_lp <- coxph(Surv(time, event) ~ lp, ties = "efron", control = ctl)
  f_all <- coxph(Surv(time, event) ~ ., data = cbind(x, time = time, event = event), ties = "efron", control = ctl)
  l_offset <- tail(f_offset$loglik, 1)
  list(x = x, time = time, event = event, lp = lp, observed = sum(observed), expected = sum(h),
       baseline_level = deviance(g0) - deviance(g1), slope_lr = 2 * (f_lp$loglik[2] - l_offset),
       coefficients_lr = 2 * (f_all$loglik[2] - f_lp$loglik[2]), f_lp = f_lp, f_all = f_all)
}

d <- read.csv("tests/data/update_registry.csv", stringsAsFactors = FALSE)
c1 <- components(d)
p <- ncol(c1$x)
values <- list(
  observed = c1$observed, expected = c1$expected, tau = tau,
  baseline_level = c1$baseline_level, slope_lr = c1$slope_lr, coefficients_lr = c1$coefficients_lr,
  slope = unname(coef(c1$f_lp)), slope_se = sqrt(c1$f_lp$var[1, 1]),
  rsq_lp = unname(summary(c1$f_lp)$rsq["rsq"]), n = nrow(d), events = sum(c1$event),
  df_refit_original = p + 1, df_refit_baseline = p, df_refit_recalibration = p - 1,
  p_refit_original = pchisq(c1$baseline_level + c1$slope_lr + c1$coefficients_lr, p + 1, lower.tail = FALSE),
  p_refit_baseline = pchisq(c1$slope_lr + c1$coefficients_lr, p, lower.tail = FALSE),
  p_refit_recalibration = pchisq(c1$coefficients_lr, p - 1, lower.tail = FALSE))
refit <- coef(c1$f_all)
for (j in seq_along(refit)) values[[paste0("refit_", j)]] <- unname(refit[j])

# Breslow baselines at the base linear predictor (baseline) and at slope * lp (recalibration).
at_offset <- function(offset, time, event) {
  f <- coxph(Surv(time, event) ~ offset(offset), ties = "breslow")
  s <- survfit(f, newdata = data.frame(offset = 0), ctype = 1)
  data.frame(time = s$time[s$n.event > 0], cum_hazard = s$cumhaz[s$n.event > 0])
}
b1 <- at_offset(c1$lp, c1$time, c1$event); b1$method <- "baseline"
b2 <- at_offset(values$slope * c1$lp, c1$time, c1$event); b2$method <- "recalibration"

# Uniform shrinkage: rms::validate's optimism-corrected calibration slope of the refit.
x <- c1$x; x$time <- c1$time; x$event <- c1$event
dd <- datadist(x); options(datadist = "dd")
form <- as.formula(paste("Surv(time, event) ~", paste(names(c1$x), collapse = " + ")))
f_cph <- cph(form, data = x, x = TRUE, y = TRUE, surv = TRUE)
set.seed(20170101)
v <- validate(f_cph, B = 1000)
values$rms_slope_corrected <- v["Slope", "index.corrected"]
values$rms_slope_B <- v["Slope", "n"]

# Multiple imputation: D2 over 5 completed data sets, and the pooled slope by Rubin's rules.
completed <- read.csv("tests/data/update_completed.csv", stringsAsFactors = FALSE)
parts <- lapply(sort(unique(completed$imputation)), function(i) components(completed[completed$imputation == i, ]))
composite <- list(
  refit_original = sapply(parts, function(c) c$baseline_level + c$slope_lr + c$coefficients_lr),
  refit_baseline = sapply(parts, function(c) c$slope_lr + c$coefficients_lr),
  refit_recalibration = sapply(parts, function(c) c$coefficients_lr))
dfs <- c(refit_original = p + 1, refit_baseline = p, refit_recalibration = p - 1)
for (name in names(composite)) {
  r <- mitml:::.D2(composite[[name]], dfs[[name]])
  values[[paste0("mi_", name, "_F")]] <- r$F
  values[[paste0("mi_", name, "_v")]] <- r$v
  values[[paste0("mi_", name, "_p")]] <- pf(r$F, r$k, r$v, lower.tail = FALSE)
}
pooled <- pool(as.mira(lapply(parts, function(c) c$f_lp)))$pooled
values$mi_slope <- pooled$estimate
values$mi_slope_var <- pooled$t

full <- function(x) sprintf("%.17g", x)
write.csv(data.frame(name = names(values), value = full(unlist(values))), "tests/data/r_update_values.csv",
          row.names = FALSE, quote = FALSE)
b <- rbind(b1, b2)
write.csv(data.frame(method = b$method, time = full(b$time), cum_hazard = full(b$cum_hazard)),
          "tests/data/r_update_baselines.csv", row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "rms",
    as.character(packageVersion("rms")), "mice", as.character(packageVersion("mice")), "mitml",
    as.character(packageVersion("mitml")), "\n")
