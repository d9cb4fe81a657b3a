# Imputed-category frequencies from mice (logreg / polyreg) for tests/test_imputation.py. Run from the repository root
# (after .venv/bin/python -m tests.data.mi_data):  Rscript tests/data/r_mice_frequencies.R   (writes tests/data/r_mice_frequencies.csv)
# Same imputation model as training/imputation.py: the complete predictors x_* (required terms, event indicators,
# Nelson-Aalen cumulative hazards), biologic and cytotoxic, and the other incomplete covariates (mice's default:
# every other column predicts). m = 100 imputations, 10 iterations. Saved per variable and level: the mean over the
# imputations of the share of the imputed values at that level, and its standard deviation across imputations.
suppressMessages(library(mice))
d <- read.csv("tests/data/mi_frequency_input.csv", stringsAsFactors = FALSE, colClasses = c(tumor_type = "character"))
data <- data.frame(
  tumor_type = factor(d$tumor_type, levels = c("pancreatic", "gut", "bronchial", "other")),
  extrahepatic_metastases = factor(d$extrahepatic_metastases, levels = c(0, 1)),
  octreotide = factor(d$octreotide, levels = c(0, 1)),
  biologic = d$biologic, cytotoxic = d$cytotoxic,
  d[, grep("^x_", names(d))])
method <- make.method(data)
method[c("tumor_type", "extrahepatic_metastases", "octreotide")] <- c("polyreg", "logreg", "logreg")
m <- 100
imp <- mice(data, m = m, maxit = 10, method = method, seed = 20170101, printFlag = FALSE)
out <- list()
for (v in c("tumor_type", "extrahepatic_metastases", "octreotide")) {
  values <- imp$imp[[v]]
  for (level in levels(data[[v]])) {
    share <- sapply(values, function(column) mean(as.character(column) == level))
    out[[length(out) + 1]] <- data.frame(variable = v, level = level, missing = nrow(values), m = m,
                                         mean = mean(share), sd = sd(share))
  }
}
write.csv(do.call(rbind, out), "tests/data/r_mice_frequencies.csv", row.names = FALSE)
cat("R", R.version.string, "mice", as.character(packageVersion("mice")), "\n")
