"""Command line: ``python -m training {synthesize,fit,update,validate,promote,ship}``; see README.md,
docs/retraining.md and docs/validation.md."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from prognosis import covariates
from prognosis.store import MODEL_ARTIFACTS, ModelLoadError, served_model_dir
from registry import Registry, RegistryError, load_registry
from training import artifact, convert, promote, retrain, shrinkage, synthetic, updating, validate
from training.fit import FitError
from training.imputation import ImputationError
from training.pipeline import Progress, fit_registry, stderr_progress, update_registry

# The shipped model: a synthetic registry large enough for all 19 multivariate HRs to land within 10% of Table 1.
SHIPPED_N = 60_000
SHIPPED_SEED = 20170101


def _add_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--data",
        required=required,
        metavar="SOURCE",
        help="registry: a .csv, .xlsx or .parquet file, or an SQLAlchemy URL (with --table)",
    )
    parser.add_argument("--table", help="table name, when SOURCE is a database URL")
    parser.add_argument(
        "--columns",
        metavar="MAPPING.toml",
        help="maps your export's column names to the canonical ones ([columns] site = canonical)",
    )
    parser.add_argument(
        "--drop-incomplete",
        action="store_true",
        help="exclude (and count) rows missing a required covariate instead of stopping",
    )


def _add_validation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=validate.DEFAULT_REPLICATES,
        metavar="B",
        help=f"bootstrap replicates of the validation and of the shrinkage (default {validate.DEFAULT_REPLICATES})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=validate.DEFAULT_SEED,
        metavar="S",
        help="master seed of the bootstraps and the imputation; the same seed gives the same results",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=-1,
        metavar="N",
        help="parallel workers for the bootstrap (joblib; default -1: every core)",
    )


def _add_retraining(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impute",
        type=int,
        metavar="M",
        help="multiply impute missing optional covariates M times (M >= 2; 20 is usual) and pool the "
        "fits by Rubin's rules; --seed seeds the imputation",
    )


def _source_info(args: argparse.Namespace) -> dict:
    """Where the data came from, so that promote can reload them; a database password is never recorded."""
    data = args.data
    if "://" in data:
        import sqlalchemy

        location = sqlalchemy.make_url(data).render_as_string(hide_password=True)
    else:
        location = str(Path(data).resolve())
    return {
        "location": location,
        "table": args.table,
        "columns": str(Path(args.columns).resolve()) if args.columns else None,
        "drop_incomplete": bool(args.drop_incomplete),
    }


def _run_validation(directory: Path, registry: Registry, args: argparse.Namespace, progress: Progress) -> int:
    block = validate.validate_directory(
        directory,
        registry,
        replicates=args.bootstrap,
        seed=args.seed,
        n_jobs=args.jobs,
        source=_source_info(args),
        progress=progress,
    )
    for name in covariates.ENDPOINTS:
        ep = block[name]
        print(
            f"{name.upper()}: Harrell's C {ep['harrell_c']['apparent']:.3f} (optimism-corrected "
            f"{ep['harrell_c']['optimism_corrected']:.3f}), calibration slope optimism-corrected "
            f"{ep['calibration_slope']['optimism_corrected']:.3f}, PH global p = {ep['ph_test']['global_p']:.3g}, "
            f"{ep['events_per_parameter']:.1f} events per parameter"
        )
    for warning in block["warnings"]:
        print(f"warning: {warning}")
    print(
        f"validation {block['status']}"
        + (": " + "; ".join(block["failures"]) if block["failures"] else "")
        + f"; written to {directory / 'model_card.json'}"
    )
    return 0


def _print_report(registry: Registry) -> None:
    report = registry.report
    print(f"rows read: {report['rows_read']}; used: HPFS {report['rows_used']['hpfs']}, OS {report['rows_used']['os']}")
    for ex in report["excluded"]:
        print(f"excluded: {ex['rows']} rows ({ex['reason']})")
    for endpoint, n in report["endpoint_missing"].items():
        if n:
            print(f"{n} rows lack the {endpoint.upper()} outcome and serve only the other endpoint")
    if report.get("ignored_columns"):
        print(f"ignored columns: {', '.join(report['ignored_columns'])}")


def cmd_synthesize(args: argparse.Namespace) -> int:
    frame = synthetic.synthesize(args.n, args.seed)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} synthetic patients to {args.out}")
    return 0


def _load_for_training(args: argparse.Namespace) -> Registry:
    """The registry for ``fit``/``update``: with ``--impute`` rows may lack optional covariates."""
    try:
        registry = load_registry(
            args.data,
            table=args.table,
            columns=args.columns,
            drop_incomplete=args.drop_incomplete,
            allow_missing_optional=bool(args.impute),
        )
    except RegistryError as exc:
        optional_missing = [
            name
            for name in covariates.OPTIONAL
            if f"{name}: missing value" in str(exc) or f"'{name}'" in str(exc) and "missing" in str(exc)
        ]
        if optional_missing and not args.impute:
            raise RegistryError(
                f"{exc}\n(optional covariates with missing values, {', '.join(optional_missing)}, "
                "can be multiply imputed instead: --impute 20)",
                exc.problems,
            ) from exc
        raise
    _print_report(registry)
    missing = {name: n for name, n in registry.report.get("missing_optional", {}).items() if n}
    if missing:
        print("missing optional values (imputed): " + ", ".join(f"{name} {n}" for name, n in missing.items()))
    return registry


def _print_retraining(path: Path) -> list[dict]:
    """What the card says about sample size, shrinkage, updating and missing data, in plain lines."""
    card = json.loads((path / "model_card.json").read_text(encoding="utf-8"))
    blocks = []
    for name, ep in card["endpoints"].items():
        if "sample_size" in ep:
            for line in retrain.sample_size_lines(name, ep["sample_size"]):
                print(line)
            blocks.append(ep["sample_size"])
        update = ep.get("update")
        if update:
            print(
                f"  update of {update['base_version']}: O/E {update['observed_expected']:.3f}, calibration slope "
                f"{update['calibration_slope']:.3f} (SE {update['calibration_slope_se']:.3f}); closed test at "
                f"alpha = {update['alpha']}:"
            )
            for t in update["tests"]:
                print(
                    f"    {t['comparison']}: {t['test']} {t['statistic']:.2f} on {t['df']} df, p = {t['p_value']:.3g}"
                    + (" (rejected)" if t["rejected"] else " (not rejected)")
                )
            print(f"  method: {update['method']} ({update['selected_by']})")
        shrunk = ep.get("shrinkage", {})
        if shrunk.get("method") not in (None, shrinkage.NONE):
            print(
                f"  shrunk: coefficients x {shrunk['factor']:.3f} (bootstrap calibration slope "
                f"{shrunk['calibration_slope']:.3f} over {shrunk['replicates']} replicates; {shrunk['reason']})"
            )
    missing = card.get("missing_data", {})
    if missing.get("method") == "multiple_imputation":
        print(
            f"multiple imputation: {missing['imputations']} imputations, {missing['rows_imputed']} rows imputed; "
            "largest fraction of missing information: "
            + ", ".join(
                f"{ep.upper()} {max(v.values()):.2f}" for ep, v in missing["fraction_missing_information"].items()
            )
        )
    return blocks


def cmd_fit(args: argparse.Namespace) -> int:
    registry = _load_for_training(args)
    progress = stderr_progress()
    path = fit_registry(
        registry,
        args.out,
        version=args.version,
        progress=progress,
        export_sksurv=args.export_sksurv,
        imputations=args.impute or 0,
        shrinkage=args.shrinkage,
        replicates=args.bootstrap,
        seed=args.seed,
        reference=served_model_dir(),
    )
    print(f"model written to {path}")
    blocks = _print_retraining(path)
    if any(not b["adequate"] for b in blocks) and served_model_dir().exists():
        print(
            "the registry is too small for a model with these terms (above); instead of refitting, consider "
            f"updating the served model: python -m training update --base {served_model_dir()} --data {args.data} "
            "--out DIR (docs/retraining.md)"
        )
    _validate_after(path, registry, args, progress)
    print(f"serve it with: python -m training promote {path}")
    return 0


def _validate_after(path: Path, registry: Registry, args: argparse.Namespace, progress: Progress) -> None:
    """``--validate``: on the same registry (validation imputes as the card's missing_data says)."""
    if args.validate:
        _run_validation(path, registry, args, progress)


def cmd_update(args: argparse.Namespace) -> int:
    registry = _load_for_training(args)
    progress = stderr_progress()
    path = update_registry(
        args.base,
        registry,
        args.out,
        method=args.method,
        alpha=args.alpha,
        version=args.version,
        progress=progress,
        imputations=args.impute or 0,
        replicates=args.bootstrap,
        seed=args.seed,
    )
    print(f"model written to {path}")
    _print_retraining(path)
    _validate_after(path, registry, args, progress)
    print(f"serve it with: python -m training promote {path}")
    return 0


def _fitted_with_imputation(directory: Path) -> bool:
    try:
        card = json.loads((directory / "model_card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (card.get("missing_data") or {}).get("method") == "multiple_imputation"


def cmd_validate(args: argparse.Namespace) -> int:
    # A model fitted with multiple imputation is validated with imputation: rows missing optional values are kept.
    registry = load_registry(
        args.data,
        table=args.table,
        columns=args.columns,
        drop_incomplete=args.drop_incomplete,
        allow_missing_optional=_fitted_with_imputation(Path(args.dir)),
    )
    _print_report(registry)
    return _run_validation(Path(args.dir), registry, args, stderr_progress())


def _comparison_data(args: argparse.Namespace) -> Registry | None:
    """The candidate's data for the comparison: --data, else the source its validation recorded (if unchanged)."""
    if args.data:
        return load_registry(args.data, table=args.table, columns=args.columns, drop_incomplete=args.drop_incomplete)
    try:
        card = json.loads((Path(args.dir) / "model_card.json").read_text(encoding="utf-8"))
        source = card["validation"]["data"]
        location = source["location"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not location:
        return None
    if "://" in location and "***" in location:
        print("no comparison with the current model: pass --data (the database password is not recorded)")
        return None
    try:
        registry = load_registry(
            location,
            table=source.get("table"),
            columns=source.get("columns"),
            drop_incomplete=bool(source.get("drop_incomplete")),
        )
    except RegistryError as exc:
        print(f"no comparison with the current model: the validation data cannot be read again ({exc})")
        return None
    if registry.sha256 != source.get("sha256"):
        print(f"no comparison with the current model: {location} changed since the validation; pass --data")
        return None
    return registry


def cmd_promote(args: argparse.Namespace) -> int:
    registry = _comparison_data(args)
    link = promote.promote(args.dir, root=args.root, force=args.force, registry=registry, report=print)
    print(f"{link} -> {Path(args.dir).resolve().name}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    endpoints = convert.convert(args.dir)
    print(f"converted {args.dir} ({', '.join(endpoints)}) to arrays and JSON; the calculator can serve it")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    """Rebuild the shipped model from the synthetic registry and make it current."""
    progress = stderr_progress()
    progress(f"synthesizing {args.n} patients (seed {args.seed})")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "synthetic.csv"
        synthetic.synthesize(args.n, args.seed).to_csv(csv, index=False)
        registry = load_registry(str(csv))
        version = synthetic.version_name(args.n, args.seed)
        out = MODEL_ARTIFACTS / version
        if out.exists():
            raise artifact.ArtifactError(f"{out} exists; remove it to rebuild the shipped model")
        path = fit_registry(registry, out, version=version, progress=progress)
        block = validate.validate_directory(
            path,
            registry,
            replicates=args.bootstrap,
            seed=args.seed,
            n_jobs=args.jobs,
            source={"location": None},
            progress=progress,
        )
        print(f"validation {block['status']}" + (": " + "; ".join(block["failures"]) if block["failures"] else ""))
    promote.promote(path, MODEL_ARTIFACTS, report=print)
    print(f"shipped model {version} is current")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthesize", help="write a synthetic registry whose truth is the published Table 1")
    p.add_argument("--n", type=int, required=True, help="patients")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, metavar="FILE.csv")
    p.set_defaults(run=cmd_synthesize)

    p = sub.add_parser("fit", help="fit HPFS and OS models and write one artifact directory")
    _add_source(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new artifact directory (must not exist)")
    p.add_argument("--version", help="model version label (default: date, time and data digest)")
    p.add_argument("--validate", action="store_true", help="validate the new model on the same data (as `validate`)")
    _add_retraining(p)
    p.add_argument(
        "--shrinkage",
        choices=shrinkage.MODES,
        default="auto",
        help="shrink the coefficients by the bootstrap calibration slope: auto (default) when the registry "
        "is too small by Riley et al.'s criteria, bootstrap always, none never",
    )
    p.add_argument(
        "--export-sksurv",
        action="store_true",
        help="also fit scikit-survival's CoxPHSurvivalAnalysis and write it beside the model as "
        "{endpoint}.sksurv.joblib, for data scientists (slow on large registries; never served)",
    )
    _add_validation(p)
    p.set_defaults(run=cmd_fit)

    p = sub.add_parser("update", help="update an existing model version on new registry data and write a new one")
    p.add_argument("--base", required=True, metavar="MODEL_DIR", help="the model version to update")
    _add_source(p)
    p.add_argument("--out", required=True, metavar="DIR", help="new artifact directory (must not exist)")
    p.add_argument(
        "--method",
        choices=("auto", *updating.METHODS),
        default="auto",
        help="auto (default): per endpoint by closed testing; original, baseline, recalibration or refit "
        "for both endpoints",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=updating.ALPHA,
        help=f"significance level of the closed test (default {updating.ALPHA})",
    )
    p.add_argument("--version", help="model version label (default: date, time and data digest)")
    p.add_argument("--validate", action="store_true", help="validate the new model on the same data (as `validate`)")
    _add_retraining(p)
    _add_validation(p)
    p.set_defaults(run=cmd_update)

    p = sub.add_parser("validate", help="validate DIR on registry data and write the results into its model card")
    p.add_argument("dir", metavar="DIR")
    _add_source(p)
    _add_validation(p)
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser(
        "promote",
        help="make DIR the version served by default (the link $CALCULATOR_MODEL_DIR, default model_artifacts/current)",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument(
        "--root",
        help="folder holding the 'current' link (default: model_artifacts/, where the calculator "
        "serves from; a version elsewhere is copied in)",
    )
    p.add_argument("--force", action="store_true", help="promote even if DIR failed validation or was never validated")
    _add_source(p, required=False)
    p.set_defaults(run=cmd_promote)

    p = sub.add_parser("convert", help="convert a model version in the old pickled format to arrays and JSON")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("ship", help="rebuild the shipped synthetic model and make it current")
    p.add_argument("--n", type=int, default=SHIPPED_N)
    p.add_argument("--seed", type=int, default=SHIPPED_SEED)
    p.add_argument("--bootstrap", type=int, default=validate.DEFAULT_REPLICATES, metavar="B")
    p.add_argument("--jobs", type=int, default=-1, metavar="N")
    p.set_defaults(run=cmd_ship)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (
        RegistryError,
        FitError,
        artifact.ArtifactError,
        ModelLoadError,
        validate.ValidationError,
        ImputationError,
        updating.UpdateError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
