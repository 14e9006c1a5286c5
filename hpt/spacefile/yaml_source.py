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

# A space.yaml holds tens of values; aliases can make a few lines stand for billions.
MAX_VALUES = 100_000
MAX_DEPTH = 32


def nesting_depth(root) -> int:
    """The deepest nesting of sequences and mappings (a scalar is depth 0)."""
    deepest, stack, seen = 0, [(root, 0)] if root is not None else [], set()
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if id(node) in seen or deepest > MAX_DEPTH:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((c, depth + 1) for pair in node.value for c in pair)
    return deepest


def expanded_size(root) -> int:
    """How many values the document has once every alias is expanded, counted without
    expanding: an alias is the same node object again, so sizes are memoized per node."""
    sizes: dict[int, int] = {}
    stack = [(root, False)] if root is not None else []
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), 1 << 62)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes.get(id(root), 0)


_SYNTAX_FIX = ("fix the indentation, and quote values that contain ': ' or ' #' or start "
               "with one of [ ] { } * & ! % @ `")


def parse_yaml(text: str, display: str) -> tuple[Any, list[str]]:
    """(data, problems): the document, or the problems that stop it from being read."""
    try:
        loader = SpaceLoader(text)  # its reader already rejects control characters
    except yaml.reader.ReaderError as exc:
        return None, [f"{display}: character {exc.character:#06x} at offset {exc.position} is "
                      f"not allowed in YAML; remove control characters (save the file as plain "
                      f"UTF-8 text)"]
    try:
        node = loader.get_single_node()
        depth = nesting_depth(node)
        if depth > MAX_DEPTH:
            return None, [f"{display}: values are nested {depth} levels deep; a space needs "
                          f"a handful (at most {MAX_DEPTH}): flatten the document"]
        size = expanded_size(node)
        if size > MAX_VALUES:
            return None, [f"{display}: the document expands to {size} values through YAML "
                          f"aliases (*name); a space has at most {MAX_VALUES}: write the "
                          f"values out instead of nesting aliases"]
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "cannot be read"
        fix = ("indent with spaces, not tabs" if "\\t" in what or "\t" in what else _SYNTAX_FIX)
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return None, [f"{display}: {where}YAML syntax error: {what}{context}; {fix}"]
    except yaml.YAMLError as exc:
        return None, [f"{display}: YAML error: {exc}; {_SYNTAX_FIX}"]
    except RecursionError:
        return None, [f"{display}: values are nested too deeply to read (at most "
                      f"{MAX_DEPTH} levels); flatten the document"]
    finally:
        loader.dispose()
    problems = [
        f"{display}: line {dup.line + 1}, column {dup.column + 1}: duplicate key {key!r} "
        f"(first at line {first.line + 1}); remove one of them (YAML would keep only the last)"
        for key, first, dup in sorted(loader.duplicates, key=lambda d: d[2].index)
    ]
    return data, problems
