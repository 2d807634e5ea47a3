"""One-line error messages (common/messages.py)."""

import pytest
import yaml

from common.messages import first_line, yaml_problem


def test_first_line_keeps_what_and_where_and_drops_the_excerpt():
    error = ValueError("Binder Error: column x not found:\nLINE 1: SELECT x\n        ^")
    assert first_line(error) == "Binder Error: column x not found"
    assert first_line(RuntimeError("  \n")) == "RuntimeError"


def test_yaml_problem_names_the_line():
    with pytest.raises(yaml.YAMLError) as caught:
        yaml.safe_load("a: 1\nb: [2, 3\nc: 4\n")
    problem = yaml_problem(caught.value)
    assert "\n" not in problem
    assert problem == "expected ',' or ']', but got ':' (line 3)"
