"""Writes a rendered HostContract to disk: the host's /opt/ml-style tree (contract §1).

The thin I/O shell around `contract.render_host_contract`; every path it touches is checked
to stay inside the contract's base_dir, symlinks already in the tree included.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from hpt.runtime.contract import HostContract

_IGNORED_SOURCES = shutil.ignore_patterns("__pycache__", ".git")


def _ignore_for(base: Path):
    """What code/ never copies: caches, .git, and any folder holding the trial itself (a
    source_dir that contains the experiments folder would otherwise copy itself forever)."""
    base = Path(base).resolve()

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(_IGNORED_SOURCES(directory, names))
        for name in names:
            path = Path(directory, name)
            if path.is_dir() and not path.is_symlink() and path.resolve() in base.parents:
                skipped.add(name)
        return skipped

    return ignore


def _inside(base: Path, rel: str, *, follow_last: bool = True,
            real_base: str | None = None) -> Path:
    """base/rel, or ValueError when rel could reach outside base (.., absolute, symlinks)."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or "\0" in rel:
        raise ValueError(f"refusing to write {rel!r}: not a relative path inside {base}")
    path = base.joinpath(*pure.parts)
    real_base = real_base or os.path.realpath(base)
    # The last component of a channel link is itself a link to outside data: check its parent.
    probe = _resolve_below(real_base, pure.parts if follow_last else pure.parts[:-1])
    if probe != real_base and not probe.startswith(real_base + os.sep):
        raise ValueError(f"refusing to write {rel!r}: it resolves to {probe}, "
                         f"outside the host tree {real_base}")
    return path


def _resolve_below(real_base: str, parts: tuple[str, ...]) -> str:
    """os.path.realpath(real_base/parts) for a real_base already resolved: only the parts
    below it are looked at (a trial's tree is ~10 paths, each of ~10 components above it)."""
    current = real_base
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        if os.path.islink(current):  # resolved in full, with whatever follows it
            return os.path.realpath(os.path.join(current, *parts[i + 1:]))
    return current


def _write_atomic(path: Path, content: str) -> None:
    # No fsync: a tree only matters to a running job, and a job lost in a crash is re-run
    # from a fresh tree; the rename keeps a reader from ever seeing half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link_channel(path: Path, source: Path, name: str) -> None:
    """input/data/<name> -> source (a directory), replacing an older link or an empty dir."""
    source = Path(source).resolve()
    if not source.exists():
        raise FileNotFoundError(f"channel {name!r}: local data {source} does not exist")
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        entries = list(path.iterdir())
        # Only links (an earlier single-file channel) may go; real files are someone's data.
        if not all(e.is_symlink() for e in entries):
            raise ValueError(f"channel {name!r}: {path} already holds files; refusing to "
                             f"replace it with a link to {source}")
        for entry in entries:
            entry.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()
    if source.is_dir():
        path.symlink_to(source, target_is_directory=True)
    else:  # a single file: the channel is a directory holding a link to it
        path.mkdir()
        (path / source.name).symlink_to(source)


def shard_files(source: Path, index: int, count: int) -> list[Path]:
    """ShardedByS3Key: host `index` of `count` gets every count-th file (sorted by key)."""
    files = sorted(p for p in Path(source).rglob("*") if p.is_file())
    return files[index::count]


def _link_shard(path: Path, source: Path, name: str, index: int, count: int) -> None:
    """input/data/<name> as a folder of links to this host's share of source's files."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise FileNotFoundError(f"channel {name!r}: ShardedByS3Key needs a folder of files, "
                                f"{source} is not one")
    if path.is_symlink():
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    for file in shard_files(source, index, count):
        link = path / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(file)


def materialize(contract: HostContract, source_dir: Path,
                channel_sources: dict[str, Path], shard: tuple[int, int] | None = None,
                sharded: frozenset[str] = frozenset()) -> None:
    """Creates contract's tree under its base_dir: dirs, config files, code/, channel links.

    `channel_sources` maps a channel to its local data; channels not listed get an empty
    input/data/<channel> directory (for a downloader to fill). Channels in `sharded` get
    only this host's share (`shard` = (host index, host count)) of their files.
    """
    base = Path(contract.base_dir)
    if not base.is_absolute():
        raise ValueError(f"base_dir must be absolute (got {contract.base_dir!r})")
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"trainer source_dir {source_dir} is not a directory")
    channel_dirs = {f"input/data/{name}": name for name in channel_sources}
    unknown = [n for n in channel_sources if f"input/data/{n}" not in contract.dirs]
    if unknown:
        raise ValueError(f"channel_sources names channels {unknown} that the contract does "
                         f"not have ({[d for d in contract.dirs if d.startswith('input/data/')]})")
    # Check every path before creating anything, so a bad contract leaves no partial tree.
    base.mkdir(parents=True, exist_ok=True)
    real_base = os.path.realpath(base)
    paths = {rel: _inside(base, rel, follow_last=rel not in channel_dirs, real_base=real_base)
             for rel in (*contract.dirs, *contract.files, "code")}

    folders = {paths[rel].parent if rel in channel_dirs else paths[rel] for rel in contract.dirs}
    folders |= {paths[rel].parent for rel in contract.files}
    for folder in sorted(folders, key=lambda path: len(path.parts)):  # parents first
        folder.mkdir(parents=True, exist_ok=True)
    for rel, content in contract.files.items():
        # Re-checked after the mkdirs: a link planted meanwhile must not redirect the write.
        _write_atomic(_inside(base, rel, real_base=real_base), content)
    shutil.copytree(source_dir, paths["code"], ignore=_ignore_for(base), dirs_exist_ok=True)
    for rel, name in channel_dirs.items():
        target = paths[rel]
        if name in sharded and shard is not None and shard[1] > 1:
            _link_shard(target, channel_sources[name], name, *shard)
        else:
            _link_channel(target, channel_sources[name], name)
