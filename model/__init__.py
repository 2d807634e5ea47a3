"""Multi-task face model (age, gender, more heads by config).

Torch-free at import: the analysis path imports ``model.preprocess``, ``model.datasets`` and
``model.metrics`` without torch; training and export modules import torch themselves.
"""
