"""Command line: ``python -m training {synthesize,fit,promote,ship}``; see README.md."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from calculator.model_store import ModelLoadError
from training import artifact, synthetic
from training.fit import FitError
from training.pipeline import fit_registry, stderr_progress
from training.registry import RegistryError, load_registry

REPO = Path(__file__).resolve().parent.parent
MODEL_ARTIFACTS = REPO / "model_artifacts"
# The shipped model: a synthetic registry large enough for all 19 multivariate HRs to land within 10% of Table 1.
SHIPPED_N = 60_000
SHIPPED_SEED = 20170101


def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="SOURCE",
                        help="registry: a .csv, .xlsx or .parquet file, or an SQLAlchemy URL (with --table)")
    parser.add_argument("--table", help="table name, when SOURCE is a database URL")
    parser.add_argument("--columns", metavar="MAPPING.toml",
                        help="maps your export's column names to the canonical ones ([columns] site = canonical)")
    parser.add_argument("--drop-incomplete", action="store_true",
                        help="exclude (and count) rows missing a required covariate instead of stopping")


def _print_report(registry) -> None:
    report = registry.report
    print(f"rows read: {report['rows_read']}; used: HPFS {report['rows_used']['hpfs']}, OS {report['rows_used']['os']}")
    for ex in report["excluded"]:
        print(f"excluded: {ex['rows']} rows ({ex['reason']})")
    for endpoint, n in report["endpoint_missing"].items():
        if n:
            print(f"{n} rows lack the {endpoint.upper()} outcome and serve only the other endpoint")
    if report.get("ignored_columns"):
        print(f"ignored columns: {', '.join(report['ignored_columns'])}")


def cmd_synthesize(args) -> int:
    frame = synthetic.synthesize(args.n, args.seed)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} synthetic patients to {args.out}")
    return 0


def cmd_fit(args) -> int:
    registry = load_registry(args.data, table=args.table, columns=args.columns, drop_incomplete=args.drop_incomplete)
    _print_report(registry)
    path = fit_registry(registry, args.out, version=args.version, progress=stderr_progress())
    print(f"model written to {path}; serve it with: python -m training promote {path}")
    return 0


def cmd_promote(args) -> int:
    link = artifact.promote(args.dir, root=args.root)
    print(f"{link} -> {Path(args.dir).resolve().name}")
    return 0


def cmd_ship(args) -> int:
    """Rebuild the shipped model from the synthetic registry and make it current."""
    progress = stderr_progress()
    progress(f"synthesizing {args.n} patients (seed {args.seed})")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "synthetic.csv"
        synthetic.synthesize(args.n, args.seed).to_csv(csv, index=False)
        registry = load_registry(str(csv))
        version = f"synthetic-n{args.n}-seed{args.seed}"
        out = MODEL_ARTIFACTS / version
        if out.exists():
            raise artifact.ArtifactError(f"{out} exists; remove it to rebuild the shipped model")
        path = fit_registry(registry, out, version=version, progress=progress)
    artifact.promote(path, MODEL_ARTIFACTS)
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
    p.set_defaults(run=cmd_fit)

    p = sub.add_parser("promote", help="make DIR the version served by default (model_artifacts/current)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--root", help="folder holding the 'current' link (default: DIR's parent)")
    p.set_defaults(run=cmd_promote)

    p = sub.add_parser("ship", help="rebuild the shipped synthetic model and make it current")
    p.add_argument("--n", type=int, default=SHIPPED_N)
    p.add_argument("--seed", type=int, default=SHIPPED_SEED)
    p.set_defaults(run=cmd_ship)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (RegistryError, FitError, artifact.ArtifactError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
