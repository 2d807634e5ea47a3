"""The analysis defaults (analyze.yaml) and the training recipe (train.yaml). A package only so
that the files install beside the code: ``pip install .`` copies packages, not loose folders, and
``pipelines.settings`` reads its defaults from here."""
