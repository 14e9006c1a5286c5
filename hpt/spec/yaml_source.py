"""Reading a space.yaml: YAML with duplicate keys rejected and `1e-3` read as a number.

PyYAML follows YAML 1.1, where `1e-3` and `2.5e3` are strings; hyperparameter bounds are
written that way all the time, so this loader reads it as YAML 1.2 does: a float.
Duplicate keys are an error here (plain YAML keeps the last one silently).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# YAML 1.2 exponent floats that YAML 1.1 misses: 1e-3, 1E5, 2.5e3 (1.1 wants a dot AND a sign).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class SpaceLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of keeping the last."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[Any, yaml.Mark, yaml.Mark]] = []

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then overriding a key is legitimate
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # unhashable key: the constructor reports it
                if seen is not key_node.start_mark:
                    self.duplicates.append((key, seen, key_node.start_mark))
        return super().construct_mapping(node, deep=deep)


SpaceLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT,
                                  list("-+0123456789."))

_SYNTAX_FIX = ("fix the indentation, and quote values that contain ': ' or ' #' or start "
               "with one of [ ] { } * & ! % @ `")


def parse_yaml(text: str, display: str) -> tuple[Any, list[str]]:
    """(data, problems): the document, or the problems that stop it from being read."""
    loader = SpaceLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "cannot be read"
        fix = ("indent with spaces, not tabs" if "\\t" in what or "\t" in what else _SYNTAX_FIX)
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return None, [f"{display}: {where}YAML syntax error: {what}{context}; {fix}"]
    except yaml.YAMLError as exc:
        return None, [f"{display}: YAML error: {exc}; {_SYNTAX_FIX}"]
    finally:
        loader.dispose()
    problems = [
        f"{display}: line {dup.line + 1}, column {dup.column + 1}: duplicate key {key!r} "
        f"(first at line {first.line + 1}); remove one of them (YAML would keep only the last)"
        for key, first, dup in sorted(loader.duplicates, key=lambda d: d[2].index)
    ]
    return data, problems
