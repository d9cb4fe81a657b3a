"""``python -m calculator COMMAND ...``: the calculator's command line. Commands: ``score`` (a file of patients;
``python -m calculator score --help``). No Flask is imported (``calculator/__init__.py`` builds the app lazily)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# One BLAS thread per process, set before numpy loads: scoring multiplies small matrices, where threads only contend
# (as gunicorn.conf.py does for the app's workers).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

USAGE = "usage: python -m calculator score --data PATIENTS --out PREDICTIONS [options]  (score --help for all)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "score":
        from calculator.score_cli import main as score

        return score(rest)
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
