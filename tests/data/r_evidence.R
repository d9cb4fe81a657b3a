# Evidence-scaled variances (issue 8) against R's survival package: a synthetic registry of N rows standing for a
# study of 184 patients is fitted as if with case weights 184 / N. Run from the repository root:
#   Rscript tests/data/r_evidence.R      (writes tests/data/r_evidence_coefficients.csv, r_evidence_curves.csv)
# Same registry, terms and patients as r_reference.R; coxph(ties = "efron", weights = w), survfit.coxph(ctype = 1).
library(survival)
d <- read.csv("tests/data/r_reference_registry.csv", stringsAsFactors = FALSE)
source("tests/data/r_terms.R")  # terms(d): the model's 19 terms as columns
patients <- read.csv("tests/data/r_reference_patients.csv", stringsAsFactors = FALSE)
times <- c(3, 6, 12, 24, 36)
evidence <- 184
coefs <- list(); curves <- list()
for (ep in c("hpfs", "os")) {
  x <- terms(d)
  x$time <- d[[paste0(ep, "_months")]]; x$event <- d[[paste0(ep, "_event")]]
  wts <<- rep(evidence / nrow(d), nrow(d))
  # Model-based (not robust) variance: the inverse of the weighted information, what scaling reproduces.
  fit <- coxph(Surv(time, event) ~ ., data = x, weights = wts, ties = "efron", robust = FALSE,
               control = coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100))
  se <- sqrt(diag(fit$var))
  coefs[[ep]] <- data.frame(endpoint = ep, position = seq_along(fit$coefficients), coef = unname(fit$coefficients),
                            se = se, p = 2 * pnorm(-abs(fit$coefficients / se)),
                            lower = exp(fit$coefficients - qnorm(0.975) * se),
                            upper = exp(fit$coefficients + qnorm(0.975) * se))
  for (i in seq_len(nrow(patients))) {
    sf <- survfit(fit, newdata = terms(patients[i, ]), ctype = 1)
    sm <- summary(sf, times = times, extend = TRUE)
    curves[[length(curves) + 1]] <- data.frame(endpoint = ep, patient = i, months = times, surv = sm$surv,
                                               lower = sm$lower, upper = sm$upper)
  }
}
write.csv(do.call(rbind, coefs), "tests/data/r_evidence_coefficients.csv", row.names = FALSE)
write.csv(do.call(rbind, curves), "tests/data/r_evidence_curves.csv", row.names = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "\n")
