# Reference values from R's survival package for tests/test_validate.py: Harrell's C (concordance) and the
# proportional-hazards score test (cox.zph, transforms "km" and "identity").
# Input: tests/data/r_concordance_input.csv, written by
#   .venv/bin/python -c "from tests.test_validate import write_r_input; write_r_input()"
# (two registries, tied times; per endpoint the model's design matrix x0.., time, event and the linear predictor
# lp of OUR fitted model). Run from the repository root:  Rscript tests/data/r_concordance.R
library(survival)
d <- read.csv("tests/data/r_concordance_input.csv", stringsAsFactors = FALSE)
values <- list(); zph <- list()
for (ds in unique(d$dataset)) for (ep in unique(d$endpoint)) {
  s <- d[d$dataset == ds & d$endpoint == ep, ]
  x <- s[, grep("^x[0-9]+$", names(s))]
  x <- x[, colSums(!is.na(x)) > 0, drop = FALSE]
  # Harrell's C of the given risk scores: a higher lp means a shorter expected survival, hence reverse = TRUE.
  cc <- concordance(Surv(time, event) ~ lp, data = s, reverse = TRUE)
  fit <- coxph(Surv(s$time, s$event) ~ ., data = x, ties = "efron",
               control = coxph.control(eps = 1e-12, toler.chol = 1e-15, iter.max = 100))
  cr <- concordance(fit)
  values[[length(values) + 1]] <- data.frame(dataset = ds, endpoint = ep, n = nrow(s), events = sum(s$event),
    c_given_lp = cc$concordance, concordant = cc$count[["concordant"]], discordant = cc$count[["discordant"]],
    tied_x = cc$count[["tied.x"]], tied_y = cc$count[["tied.y"]], c_r_fit = cr$concordance,
    max_abs_lp_difference = max(abs((fit$linear.predictors + sum(fit$means * coef(fit))) - s$lp)))
  for (tr in c("km", "identity")) {
    z <- cox.zph(fit, transform = tr)$table
    zph[[length(zph) + 1]] <- data.frame(dataset = ds, endpoint = ep, transform = tr, term = rownames(z),
                                         chisq = z[, "chisq"], df = z[, "df"], p = z[, "p"])
  }
}
options(digits = 15)
write.csv(do.call(rbind, values), "tests/data/r_concordance_values.csv", row.names = FALSE)
write.csv(do.call(rbind, zph), "tests/data/r_concordance_zph.csv", row.names = FALSE)
cat("R", R.version.string, "survival", as.character(packageVersion("survival")), "\n")
