"""Score an analysis output against a synthetic clip's ground truth.

python -m jobs.score --truth clip.truth.json --output output/ [--json score.json]
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.cli import ArgumentParser
from simulation import SimulationError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m jobs.score",
        description="Compare the visitors an analysis found in a synthetic clip with the clip's "
        "ground truth: visitor count error, matched pairs, gender accuracy and age MAE.",
        epilog="Predicted and true visitors are matched one to one, greedily by the IoU of their "
        "time spans ([start_s, end_s] vs [enter_s, leave_s]); the clip is found in the output's "
        "videos table by its file name.",
    )
    p.add_argument("--truth", required=True, help="the clip's .truth.json from jobs.simulate")
    p.add_argument("--output", required=True, help="the analysis output folder (jobs.analyze)")
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON here")
    p.add_argument(
        "--min-iou", type=float, default=0.1, help="least time IoU for a match (default 0.1)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from simulation.score import score

    try:
        result = score(args.truth, args.output, min_iou=args.min_iou)
        if args.json:
            try:
                with open(args.json, "w") as fh:
                    json.dump(result.to_dict(), fh, indent=1)
                    fh.write("\n")
            except OSError as exc:
                raise SimulationError(f"cannot write {args.json}: {exc.strerror}") from None
    except SimulationError as exc:
        print(f"jobs.score: error: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
