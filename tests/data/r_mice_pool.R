# Rubin's rules as mice::pool reports them, for tests/test_imputation.py. Run from the repository root (after
# .venv/bin/python -m tests.data.mi_data):  Rscript tests/data/r_mice_pool.R   (writes tests/data/r_mice_pool.csv)
# Each completed data set of tests/data/mi_pool_completed.csv is fitted by coxph(ties = "efron") with the model's 19
# terms (same order as prognosis.covariates.term_ids), then pooled with pool(as.mira(fits)) (dfcom: events - terms).
suppressMessages({library(survival); library(mice)})
d <- read.csv("tests/data/mi_pool_completed.csv", stringsAsFactors = FALSE)
source("tests/data/r_terms.R")  # terms(d): the model's 19 terms as columns
out <- list()
for (ep in c("hpfs", "os")) {
  fits <- lapply(sort(unique(d$imputation)), function(i) {
    di <- d[d$imputation == i, ]
    x <- terms(di)
    x$time <- di[[paste0(ep, "_months")]]; x$event <- di[[paste0(ep, "_event")]]
    coxph(Surv(time, event) ~ ., data = x, ties = "efron",
          control = coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100))
  })
  p <- pool(as.mira(fits))$pooled
  out[[ep]] <- data.frame(endpoint = ep, position = seq_len(nrow(p)), m = p$m, estimate = p$estimate,
                          ubar = p$ubar, b = p$b, t = p$t, std_error = sqrt(p$t), dfcom = p$dfcom, df = p$df,
                          riv = p$riv, lambda = p$lambda, fmi = p$fmi)
}
full <- function(df) { for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]]); df }
write.csv(full(do.call(rbind, out)), "tests/data/r_mice_pool.csv", row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "mice",
    as.character(packageVersion("mice")), "\n")
