"""What the warm interpreter imports before it forks, and whether it may fork then (pure
but for the imports themselves)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules_to_preload(script: Path, source_dir: Path) -> list[str]:
    """The modules `script` imports at its top level, minus the ones shipped in source_dir
    (those are copied per trial and must be imported fresh from the trial's code/ folder)."""
    try:
        tree = ast.parse(Path(script).read_bytes(), filename=str(script))
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, (ast.If, ast.Try)):  # `try: import x` / `if TYPE_CHECKING:`
            pending.extend(node.body)
    source = Path(source_dir)
    local = set()
    if source.is_dir():
        local = {p.stem for p in source.glob("*.py")} | {p.name for p in source.iterdir()
                                                         if p.is_dir()}
    seen: list[str] = []
    for name in names:
        if name.split(".")[0] not in local and name not in seen and name != "__future__":
            seen.append(name)
    return seen


def can_run_warm(argv: list[str] | tuple[str, ...], python: str) -> bool:
    """Only `python script.py ARGS` with the warm interpreter's own Python can be forked."""
    return len(argv) >= 2 and argv[0] == python and argv[1].endswith(".py")


def preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    imported, failed = [], {}
    for name in modules:
        try:
            __import__(name)
            imported.append(name)
        except BaseException as exc:  # noqa: BLE001 - a module that fails here fails cold too
            failed[name] = f"{type(exc).__name__}: {exc}"
    return imported, failed


def unsafe_to_fork() -> str | None:
    import threading
    if threading.active_count() > 1:
        return (f"{threading.active_count() - 1} threads run after the preload; forking would "
                f"copy locks they hold")
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) and torch.cuda.is_initialized():
        return "CUDA was initialised during the preload; a forked child cannot use it"
    return None
