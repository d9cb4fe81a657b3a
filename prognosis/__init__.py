"""The model itself: covariates and the design matrix, the typed model, its files, and scoring.

Importable with numpy and scipy alone: the web app (``calculator``) and the training tools (``training``) build on
it, and nothing here imports either of them.
"""
