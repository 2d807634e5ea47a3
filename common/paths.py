"""Local or remote paths: every layer passes paths through Beam's FileSystems, but a few
features exist only on this machine's filesystem (the output lock, atomic renames, globbing
leftovers), and they must agree on what counts as local."""


def is_remote(path: str) -> bool:
    """Whether ``path`` is on a Beam filesystem other than this machine's (gs://, s3://, ...)."""
    return "://" in str(path)
