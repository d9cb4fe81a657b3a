# Reference values from R's survival package for tests/test_scoring.py and tests/test_fit.py.
# Run from the repository root:  Rscript tests/data/r_reference.R   (writes tests/data/r_reference_*.csv)
# Coefficients: coxph(ties = "efron"). Curves: survfit.coxph(ctype = 1), the Breslow hazard the calculator uses,
# with R's default log-scale intervals (conf.type = "log").
library(survival)
d <- read.csv("tests/data/r_reference_registry.csv", stringsAsFactors = FALSE)
source("tests/data/r_terms.R")  # terms(d): the model's 19 terms as columns
patients <- read.csv("tests/data/r_reference_patients.csv", stringsAsFactors = FALSE)
times <- c(3, 6, 12, 24, 36)
coefs <- list(); curves <- list()
for (ep in c("hpfs", "os")) {
  x <- terms(d)
  x$time <- d[[paste0(ep, "_months")]]; x$event <- d[[paste0(ep, "_event")]]
  fit <- coxph(Surv(time, event) ~ ., data = x, ties = "efron", control = coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100))
  s <- summary(fit)
  coefs[[ep]] <- data.frame(endpoint = ep, position = seq_along(fit$coefficients), coef = s$coefficients[, 1],
                            se = s$coefficients[, 3], p = s$coefficients[, 5],
                            lower = s$conf.int[, 3], upper = s$conf.int[, 4])
  for (i in seq_len(nrow(patients))) {
    sf <- survfit(fit, newdata = terms(patients[i, ]), ctype = 1)
    sm <- summary(sf, times = times, extend = TRUE)
    q <- quantile(sf, 0.5)
    curves[[length(curves) + 1]] <- data.frame(endpoint = ep, patient = i, months = times, surv = sm$surv,
      lower = sm$lower, upper = sm$upper, median = unname(q$quantile[1]), median_lower = unname(q$lower[1]),
      median_upper = unname(q$upper[1]))
  }
}
write.csv(do.call(rbind, coefs), "tests/data/r_reference_coefficients.csv", row.names = FALSE)
write.csv(do.call(rbind, curves), "tests/data/r_reference_curves.csv", row.names = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "\n")
