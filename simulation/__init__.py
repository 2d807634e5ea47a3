"""Synthetic kiosk clips with ground truth, and scoring of an analysis run against that truth.

- :mod:`simulation.faces`: labelled face sources (UTKFace chips, or any images plus a CSV).
- :mod:`simulation.render`: renders a kiosk clip where visitors walk in, linger and leave, and
  writes ``<clip>.truth.json`` next to it.
- :mod:`simulation.score`: matches an analysis output's visitors with the truth.
"""


class SimulationError(Exception):
    """A user-facing problem (bad path, bad option): the CLI prints it on one line, exit 2."""
