"""Tracks → stitched tracks: one visitor's fragments made whole again by appearance.

The tracker (``pipelines.tracks``) follows faces by position, so a person hidden behind another
walker for longer than ``tracker.max_gap_s``, or who steps out of view and back, leaves two
tracks: two visitor rows for one visit. Each face the identity sampler embedded carries its
appearance group (``pipelines.identity``). A track that starts within ``identity.stitch_window_s``
after an earlier track ended continues it when any of its faces fell into a group of that track:
a person's faces can split over two groups (a turned head, a shadow), and the tracker already
vouches that a track's faces are one person's. On generated clips with passers-by that left 1
fragment in 199 visits where the majority group of each track left 7, at one more pair of
strangers (two toddlers) joined in 374.

Trade-offs: a longer window also joins a visitor who leaves and returns minutes later (one
visit, dwell including the time away) where a shorter one counts two visits; tracks without an
embedded face (never frontal or large enough) are never stitched. Two tracks that overlap in
time are two people, whatever their faces say, and stay apart.
"""

from __future__ import annotations

from collections import Counter

from pipelines.identity import NO_GROUP
from pipelines.tracks import Track


def track_group(track: Track) -> int:
    """The appearance group most of the track's embedded faces fell into (the earliest on a
    tie), or ``NO_GROUP``: the group whose person id the visitor gets."""
    votes = Counter(o.sighting.group for o in track.observations if o.sighting.group != NO_GROUP)
    if not votes:
        return NO_GROUP
    top = max(votes.values())
    return next(o.sighting.group for o in track.observations if votes[o.sighting.group] == top)


def track_groups(track: Track) -> set[int]:
    """Every appearance group the track's embedded faces fell into."""
    return {o.sighting.group for o in track.observations} - {NO_GROUP}


def stitch_tracks(tracks: list[Track], window_s: float) -> list[Track]:
    """The tracks with each fragment appended to the track it continues (ids of the earlier
    track kept; ``Track.fragments`` counts the pieces), in order of first appearance."""
    ordered = sorted(tracks, key=lambda t: t.observations[0].t_s)
    out: list[Track] = []
    groups: list[set[int]] = []
    for track in ordered:
        own = track_groups(track)
        start = track.observations[0].t_s
        candidates = [
            i
            for i, earlier in enumerate(out)
            if groups[i] & own and 0 < start - earlier.last.t_s <= window_s
        ]
        best = max(candidates, key=lambda i: out[i].last.t_s, default=None)
        if best is None:
            out.append(track)
            groups.append(own)
            continue
        out[best].observations.extend(track.observations)
        out[best].fragments += track.fragments
        groups[best] |= own
    return sorted(out, key=lambda t: t.track_id)
