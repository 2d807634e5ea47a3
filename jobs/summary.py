"""The run summary as jobs.analyze prints it: a few lines for a person, then one JSON line for a
scheduler or a script (its scalar figures)."""

from __future__ import annotations

import json
import sys


def print_summary(summary: dict) -> None:
    s = summary
    outside = s["videos_outside_dates"]
    print(
        f"\nanalysed {s['videos_ok'] + s['videos_failed']} videos: {s['videos_ok']} ok, "
        f"{s['videos_failed']} failed; {s['videos_unchanged']} unchanged since the last run"
        + (f", {outside} outside the dates" if outside else "")
    )
    for f in s["failed"]:
        print(f"  failed: {f['video']}: {f['error']}")
    for note in s["notes"]:
        print(f"note: {note}")
    seen = ("videos_ok", "videos_failed", "videos_unchanged", "videos_outside_dates")
    if not any(s[k] for k in seen):  # a dead mount or a wrong glob must not look like a quiet night
        print(f"warning: no videos found under {s['input']}", file=sys.stderr)
    print(
        f"visitors: {s['visitors']}; video {s['video_seconds']:.0f} s in {s['wall_seconds']:.0f} s "
        f"wall ({s['video_seconds_per_second']} video-seconds per second)"
    )
    print(f"tables in {s['output']}/ ({', '.join(s['tables'])})")
    scalars = {k: v for k, v in s.items() if k not in ("failed", "notes", "stages_ms", "tables")}
    print(json.dumps(scalars, sort_keys=True))
