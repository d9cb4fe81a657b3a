# The calculator's 19 model terms (prognosis/definitions.py) as R columns, for the R oracle scripts beside this file:
# grade, burden, prior resection/ablation, modality within grade, tumor type, extrahepatic metastases and the three
# systemic therapies, each a 0/1 column named as in those scripts' output. Sourced from the repository root.
terms <- function(d) data.frame(
  g2 = 1 * (d$who_grade == 2), g3 = 1 * (d$who_grade == 3),
  b1 = 1 * (d$tumor_burden == "25-50%"), b2 = 1 * (d$tumor_burden == "50-75%"), b3 = 1 * (d$tumor_burden == ">75%"),
  pr = d$prior_resection_ablation,
  s1 = 1 * (d$modality == "SIRT" & d$who_grade == 1), t1 = 1 * (d$modality == "TAE" & d$who_grade == 1),
  s2 = 1 * (d$modality == "SIRT" & d$who_grade == 2), t2 = 1 * (d$modality == "TAE" & d$who_grade == 2),
  s3 = 1 * (d$modality == "SIRT" & d$who_grade == 3), t3 = 1 * (d$modality == "TAE" & d$who_grade == 3),
  gut = 1 * (d$tumor_type == "gut"), br = 1 * (d$tumor_type == "bronchial"), ot = 1 * (d$tumor_type == "other"),
  ex = d$extrahepatic_metastases, oc = d$octreotide, bi = d$biologic, cy = d$cytotoxic)
