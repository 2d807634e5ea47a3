"""Development tools: synthetic clips and their scoring, a small copy of the training data for a
GPU machine, detector timing. Users run the jobs one level up."""
