"""Small helpers for the words hpt prints (no imports: the CLI's fast commands use them)."""


def plural(count: int, noun: str) -> str:
    """`1 training job`, `2 training jobs`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def shorten(line: str, width: int) -> str:
    """`line` cut to `width` characters, the cut marked with '…'."""
    line = line.rstrip()
    return line if len(line) <= width else line[:width - 1] + "…"
