# Harrell's bootstrap optimism of Somers' Dxy and the calibration slope from rms::validate, for
# tests/test_validate_r.py (the validation's optimism within Monte-Carlo error). Run from the repository root (after
# tests/data/r_validate_data.py):
#   Rscript tests/data/r_validate_rms.R [input.csv output.csv [batches]]
# cph on the 10 predictors of r_validate_bootstrap_input.csv (no tied times or scores, so rcorr.cens counts the pairs
# scikit-survival does); validate(fit, B = 200) in 25 batches with seeds 1..25 (5,000 resamples). One row per batch:
# the apparent Dxy, the optimism of Dxy and of the slope, and the number of successful resamples; the test takes the
# mean over batches and its Monte-Carlo standard error (SD / sqrt(25)). Harrell's C = (Dxy + 1) / 2.
suppressMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
input <- if (length(args) >= 1) args[1] else "tests/data/r_validate_bootstrap_input.csv"
output <- if (length(args) >= 2) args[2] else "tests/data/r_validate_rms_values.csv"
batches <- if (length(args) >= 3) as.integer(args[3]) else 25
d <- read.csv(input)
xs <- grep("^x[0-9]+$", names(d), value = TRUE)
fit <- cph(as.formula(paste("Surv(time, event) ~", paste(xs, collapse = " + "))), data = d, x = TRUE, y = TRUE)
rows <- list()
for (batch in seq_len(batches)) {
  set.seed(batch)
  v <- validate(fit, B = 200, dxy = TRUE)
  rows[[batch]] <- data.frame(batch = batch, dxy_apparent = v["Dxy", "index.orig"], dxy_optimism = v["Dxy", "optimism"],
                              slope_optimism = v["Slope", "optimism"], replicates = v["Dxy", "n"])
}
full <- function(df) { for (j in seq_along(df)) if (is.double(df[[j]])) df[[j]] <- sprintf("%.17g", df[[j]]); df }
write.csv(full(do.call(rbind, rows)), output, row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "rms", as.character(packageVersion("rms")), "\n")
