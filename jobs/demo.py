"""make demo: analyse the shipped demo clip end to end and print the resulting tables.

The clip (demo/, see demo/README.md for its provenance) is a generated kiosk scene with one
visitor; the analysis runs exactly as the nightly job does, then the tables are printed and the
result is scored against the clip's ground truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs import analyze
from jobs.cli import EXIT_OK, ArgumentParser, run
from schemas.views import connect
from simulation.ground_truth import truth_path_for
from simulation.scoring import score

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "demo"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m jobs.demo", description=__doc__.splitlines()[0])
    p.add_argument("--output", default="demo-output", help="tables folder (default demo-output/)")
    args = p.parse_args(argv)
    clips = sorted(DEMO_DIR.glob("*.mp4"))
    code = run(
        analyze.main,
        ["--input", str(DEMO_DIR), "--output", args.output, "--force", "--workers", "1"],
    )
    if code != EXIT_OK:
        return code

    con = connect(args.output)
    print("\nvideos:")
    con.sql(
        "SELECT camera, date, regexp_extract(video, '[^/]+$') AS file, status, "
        "round(duration_s, 1) AS duration_s, frames_decoded, frames_analysed, faces_detected, "
        "visitors, round(processing_s, 2) AS processing_s FROM videos ORDER BY file"
    ).show()
    print("visitors:")
    con.sql(
        "SELECT camera, track_id, start_time, round(dwell_s, 1) AS dwell_s, frames, "
        "round(age, 1) AS age, age_band, gender, round(gender_score, 3) AS p_female, "
        "round(face_px) AS face_px FROM visitors ORDER BY start_time"
    ).show()
    for clip in clips:
        print(f"against the ground truth of {clip.name}:")
        print(score(truth_path_for(clip), args.output).table())
    print(f"\ntables: {Path(args.output).resolve()}/  (python -m jobs.report --data {args.output})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run(main))
