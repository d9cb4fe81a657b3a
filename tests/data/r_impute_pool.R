# The multivariate and univariate tables of `fit --impute 5 --seed 11` on tests/data/impute_registry.csv, as mice::pool
# gives them, for tests/test_impute.py. Run from the repository root after `.venv/bin/python -m tests.data.impute_data`:
#   Rscript tests/data/r_impute_pool.R   (writes tests/data/r_impute_pool.csv)
# Each completed registry of tests/data/impute_completed.csv is fitted by coxph(ties = "efron"): the 19 terms together
# (multivariate) and each univariate group alone (a categorical variable's indicators together; grade and modality as
# one 9-level factor with grade 1 TACE as reference), then pooled with pool(as.mira(fits)).
suppressMessages({library(survival); library(mice)})
d <- read.csv("tests/data/impute_completed.csv", stringsAsFactors = FALSE)
source("tests/data/r_terms.R")  # terms(d): the model's 19 terms as columns
grade_modality <- function(d) data.frame(
  s1 = 1 * (d$modality == "SIRT" & d$who_grade == 1), t1 = 1 * (d$modality == "TAE" & d$who_grade == 1),
  c2 = 1 * (d$modality == "TACE" & d$who_grade == 2), s2 = 1 * (d$modality == "SIRT" & d$who_grade == 2),
  t2 = 1 * (d$modality == "TAE" & d$who_grade == 2), c3 = 1 * (d$modality == "TACE" & d$who_grade == 3),
  s3 = 1 * (d$modality == "SIRT" & d$who_grade == 3), t3 = 1 * (d$modality == "TAE" & d$who_grade == 3))
groups <- list(c("g2", "g3"), c("b1", "b2", "b3"), "pr", c("gut", "br", "ot"), "ex", "oc", "bi", "cy")
ctl <- coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100)
pooled <- function(ep, make) {
  fits <- lapply(sort(unique(d$imputation)), function(i) {
    di <- d[d$imputation == i, ]
    x <- make(di)
    x$time <- di[[paste0(ep, "_months")]]; x$event <- di[[paste0(ep, "_event")]]
    coxph(Surv(time, event) ~ ., data = x, ties = "efron", control = ctl)
  })
  pool(as.mira(fits))$pooled
}
out <- list()
for (ep in c("hpfs", "os")) {
  tables <- list(multivariate = pooled(ep, terms))
  uni <- lapply(groups, function(g) pooled(ep, function(di) terms(di)[, g, drop = FALSE]))
  uni[[length(uni) + 1]] <- pooled(ep, grade_modality)
  tables$univariate <- do.call(rbind, uni)
  for (kind in names(tables)) {
    p <- tables[[kind]]
    out[[length(out) + 1]] <- data.frame(endpoint = ep, kind = kind, position = seq_len(nrow(p)),
                                         estimate = sprintf("%.17g", p$estimate), std_error = sprintf("%.17g", sqrt(p$t)),
                                         fmi = sprintf("%.17g", p$fmi))
  }
}
write.csv(do.call(rbind, out), "tests/data/r_impute_pool.csv", row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "mice",
    as.character(packageVersion("mice")), "\n")
