"""A seeded mutator of space.yaml files: structured mutations of a valid space (wrong types,
missing fields, huge numbers, NaN/inf, unicode, deep nesting, unknown keys) and raw-text
corruptions (binary junk, truncation, duplicate keys, YAML alias bombs, tabs, bad UTF-8)."""

from __future__ import annotations

import copy
import random
from typing import Any, Iterator

import yaml

JUNK = [None, "", " ", "x" * 5000, -1, 0, 1, 10 ** 40, -10 ** 40, 1e308, -1e308,
        float("nan"), float("inf"), float("-inf"), True, False, [], {}, [1, "a", None],
        {"a": {"b": [1, 2]}}, "ünïcødé ☃ 𝔘", "$(id)", "`id`", "../../../etc/passwd",
        "/abs/path", "a\nb", "0x1F", "1e400", "-0", ".inf", "~", "yes", "NULL", "\t"]


def _paths(node: Any, prefix=()) -> Iterator[tuple]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


def _parent(data, path):
    node = data
    for part in path[:-1]:
        node = node[part]
    return node


def _deep(depth: int) -> dict:
    node: dict = {"leaf": 1}
    for _ in range(depth):
        node = {"a": node}
    return node


def structured(valid: dict, rng: random.Random) -> dict:
    data = copy.deepcopy(valid)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(data))
        if not paths:
            break
        path = rng.choice(paths)
        parent = _parent(data, path)
        op = rng.random()
        try:
            if op < 0.25:
                del parent[path[-1]]
            elif op < 0.75:
                parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))
            elif op < 0.85:
                if isinstance(parent, dict):
                    parent[rng.choice(["extra", "Nmae", "min ", "ＭＡＸ", "__proto__"])] = 1
                else:
                    parent.append(copy.deepcopy(rng.choice(JUNK)))
            elif op < 0.95:
                parent[path[-1]] = _deep(rng.randint(50, 400))
            else:
                parent[path[-1]] = [copy.deepcopy(rng.choice(JUNK)) for _ in range(rng.randint(0, 50))]
        except (KeyError, IndexError, TypeError):
            continue
    return data


ALIAS_BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
name: bomb
static_hyperparameters: {x: *h}
"""


def raw(valid_text: str, rng: random.Random) -> bytes:
    op = rng.randrange(9)
    text = valid_text
    if op == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
    if op == 1:
        return text.encode()[: rng.randint(0, len(text))]
    if op == 2:  # a duplicate top-level key
        line = rng.choice([ln for ln in text.splitlines() if ln and not ln.startswith(" ")])
        return (text + line + "\n").encode()
    if op == 3:
        return ALIAS_BOMB.encode() + text.encode()[:0]
    if op == 4:
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        lines[i] = "\t" + lines[i]
        return "\n".join(lines).encode()
    if op == 5:
        return text.encode() + b"\xff\xfe\xfa"
    if op == 6:
        return rng.choice([b"", b"---\n", b"- a\n- b\n", b"42\n", b"just text\n", b"null\n",
                           b"{]\n", b"!!python/object:os.system ['id']\n"])
    if op == 7:  # a random byte flipped in the middle
        data = bytearray(text.encode())
        i = rng.randrange(len(data))
        data[i] = rng.randrange(256)
        return bytes(data)
    return ("[" * 5000 + "]" * 5000).encode()


def corpus(valid: dict, seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    valid_text = yaml.safe_dump(valid, sort_keys=False)
    for i in range(count):
        if rng.random() < 0.7:
            data = structured(valid, rng)
            try:
                yield f"structured-{i}", yaml.safe_dump(data, sort_keys=False,
                                                        allow_unicode=True).encode()
            except (yaml.YAMLError, RecursionError):
                continue
        else:
            yield f"raw-{i}", raw(valid_text, rng)
