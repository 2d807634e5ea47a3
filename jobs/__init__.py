"""What a user runs (``python -m jobs.NAME``); ``jobs.dev`` holds the development tools.

Beam logs notes on the root logger the moment it is first imported, before any job has set up
logging. Every entry point imports this package first, so the filter that drops those notes
(``pipelines.runner``) goes on the root logger here.
"""

from pipelines.runner import install_log_filter

install_log_filter(verbose=True)  # the filter only; a job's setup_logging sets the levels
