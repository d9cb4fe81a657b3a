# Reference Cox-Snell R-squared from R's summary.coxph (rsq = 1 - exp(-LR / n)) for tests/test_sample_size.py.
# Run from the repository root:  Rscript tests/data/r_sample_size.R   (writes tests/data/r_sample_size_coxph.csv)
# Data: the tied-time registry of tests/data/r_reference_registry.csv, all 19 terms, coxph(ties = "efron").
library(survival)
source("tests/data/r_terms.R")
d <- read.csv("tests/data/r_reference_registry.csv", stringsAsFactors = FALSE)
x <- terms(d)
out <- list()
for (ep in c("hpfs", "os")) {
  y <- Surv(d[[paste0(ep, "_months")]], d[[paste0(ep, "_event")]])
  fit <- coxph(y ~ ., data = x, ties = "efron", control = coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100))
  s <- summary(fit)
  out[[ep]] <- data.frame(endpoint = ep, n = fit$n, events = fit$nevent, loglik_null = fit$loglik[1],
                          loglik = fit$loglik[2], rsq = unname(s$rsq["rsq"]))
}
write.csv(do.call(rbind, out), "tests/data/r_sample_size_coxph.csv", row.names = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "\n")
