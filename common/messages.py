"""One-line messages from exceptions: a user whose input is at fault gets one line saying what
and where, not a parser's excerpt or a traceback."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of an error's message (DuckDB, PyAV, YAML and pickle errors append
    excerpts and hints below it), or the error's type name when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(error).__name__


def yaml_problem(error: Exception) -> str:
    """A PyYAML parse error as ``problem (line N)``: the parser's own message quotes the
    offending text over several lines."""
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark else ""
    problem = getattr(error, "problem", None) or type(error).__name__
    return f"{problem}{where}"
