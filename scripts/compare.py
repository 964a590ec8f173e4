"""Compare finished (or running) runs in one command: a seed-averaged figure and table.

    python scripts/compare.py runs/mine                                  # every run under runs/mine
    python scripts/compare.py runs/quickstart/muon_s0 runs/quickstart/muon_mvr1_s0 --out runs/quickstart/loss
    python scripts/compare.py results/small --baseline Gluon --out /tmp/small

Any runs of any experiment and optimizer: runs that trained alike apart from their seed are one setting
(averaged over its seeds), named by its optimizer config's `label` (with the keys it differs in where two
settings share a label) and drawn in one colour; the first setting, or --baseline, is the baseline of the Δ
panel and of the table's Δ (paired by seed; "within noise" when |Δ| < 2 · std of the paired differences).
Writes <out>.png, <out>.pdf and <out>.md (default out: <first folder>/comparison). Exit 2: no runs, a
duplicated seed, or runs without an evaluation yet (the message names them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from a plain checkout
from study import runs  # noqa: E402
from study.compare import compare  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path, help="run directories or folders holding them")
    ap.add_argument("--out", type=Path, default=None, help="output path without suffix")
    ap.add_argument("--title", default=None, help="figure title (default: the runs' figure.title)")
    ap.add_argument("--baseline", default=None, help="the label of the baseline setting (default: the first)")
    args = ap.parse_args(argv)
    out = args.out or args.paths[0] / "comparison"
    try:
        res = compare(args.paths, out, args.title, args.baseline)
    except runs.RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res["markdown"])
    for p in [*res["figures"], *res["tables"]]:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
