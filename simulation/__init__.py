"""Synthetic kiosk clips with ground truth, and scoring of an analysis run against that truth.

- :mod:`simulation.photos`: labelled face photos (UTKFace chips, any images plus a CSV, an emotion
  set, a mask set), and :mod:`simulation.face_crops`, which frames the last two like UTKFace.
- :mod:`simulation.render_options`: what a clip looks like (size, rate, codec, visitors).
- :mod:`simulation.choreography`: the script: when visitors come, where they walk.
- :mod:`simulation.backdrop`, :mod:`simulation.figures`: the drawn scene and the drawn visitors.
- :mod:`simulation.clip_maker`: renders a kiosk clip where visitors walk in, linger and leave,
  and writes ``<clip>.truth.json`` next to it (format: :mod:`simulation.ground_truth`).
- :mod:`simulation.scoring`: matches an analysis output's visitors with the truth;
  :mod:`simulation.score_text` writes its scores as text.
- :mod:`simulation.make_demo_clip`: the one-off that rendered the shipped demo clip.
"""


class SimulationError(Exception):
    """A user-facing problem (bad path, bad option): the CLI prints it on one line, exit 2."""
