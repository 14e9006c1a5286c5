"""Safe extraction of a training job's model.tar.gz into the model dir a serving program reads.

A model archive is data from a training script, so it is treated as untrusted: every member
is checked before anything is written (absolute paths, `..`, links leaving the dir, devices
and fifos are refused, naming the member), and the total size is bounded. Extraction goes to
a temporary sibling folder that replaces the model dir only when complete, so a serving
program never sees half a model.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from hpt.core.errors import UserError

# A model of the size SageMaker's real-time endpoints serve comfortably; a larger archive is
# far more likely a mistake (or a tar bomb) than a model.
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_MEMBERS = 100_000


class ArchiveError(UserError):
    """A model archive that cannot be extracted safely; the message names the member."""


def _inside(path: PurePosixPath) -> bool:
    return not path.is_absolute() and ".." not in path.parts


def check_members(members: list[tarfile.TarInfo], archive: str,
                  max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
    """Raises ArchiveError for the first member that could write outside the model dir.

    Pure: looks at the member list only. Links are judged against the paths the archive
    itself creates, so `link -> /` followed by `link/x` is refused at the link.
    """
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"{archive}: {len(members)} members (more than {MAX_MEMBERS}); "
                           f"not a model archive")
    total = 0
    for m in members:
        name = PurePosixPath(m.name)
        if name.is_absolute() or m.name.startswith(("/", "\\")):
            raise ArchiveError(f"{archive}: member {m.name!r} has an absolute path; refusing to "
                               f"extract (repack the model with paths relative to model/)")
        if ".." in name.parts:
            raise ArchiveError(f"{archive}: member {m.name!r} has a '..' component; refusing to "
                               f"extract (repack the model with paths inside model/)")
        if m.issym() or m.islnk():
            target = PurePosixPath(m.linkname)
            # A symlink resolves from its own folder; a hard link from the archive root.
            resolved = (name.parent / target) if m.issym() else target
            if target.is_absolute() or not _inside(_normalize(resolved)):
                kind = "symlink" if m.issym() else "hard link"
                raise ArchiveError(f"{archive}: member {m.name!r} is a {kind} to "
                                   f"{m.linkname!r}, outside the model dir; refusing to extract")
        elif not (m.isfile() or m.isdir()):
            raise ArchiveError(f"{archive}: member {m.name!r} is a device, fifo or other special "
                               f"file; refusing to extract (a model holds files and folders)")
        total += max(m.size, 0)
        if total > max_total_bytes:
            raise ArchiveError(f"{archive}: more than {max_total_bytes} bytes once extracted "
                               f"(at member {m.name!r}); refusing to extract")
    # A regular member written through a symlink the archive made would land wherever the
    # link points: refuse any member whose parent is a link member.
    links = {_normalize(PurePosixPath(m.name)) for m in members if m.issym()}
    for m in members:
        for parent in _normalize(PurePosixPath(m.name)).parents:
            if parent in links:
                raise ArchiveError(f"{archive}: member {m.name!r} is written through the "
                                   f"symlink {str(parent)!r}; refusing to extract")


def _normalize(path: PurePosixPath) -> PurePosixPath:
    """Collapses `.` and `a/..` lexically; a leading `..` stays (and is refused)."""
    parts: list[str] = []
    for part in path.parts:
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def extract_model(archive: Path, model_dir: Path,
                  max_total_bytes: int = MAX_TOTAL_BYTES) -> bool:
    """Extracts `archive` into `model_dir` unless it is already there and newer than the
    archive. Returns True when it extracted."""
    archive, model_dir = Path(archive), Path(model_dir)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no model archive there (was the training job's model "
                           f"folder removed?); pick another training job")
    stamp = model_dir.parent / ".extracted-from"
    if (model_dir.is_dir() and stamp.is_file()
            and stamp.stat().st_mtime >= archive.stat().st_mtime
            and stamp.read_text() == str(archive.resolve())):
        return False
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            check_members(members, str(archive), max_total_bytes)  # before anything is written
            model_dir.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            # The checks above are the policy; the "data" filter is a second lock on the door
            # (it also drops setuid bits and device members).
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **extra)
    except tarfile.TarError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"{archive}: not a readable tar.gz ({exc}); re-run the training job "
                           f"(hpt rerun) to pack its model again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = model_dir.with_name(model_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if model_dir.exists():
        os.replace(model_dir, old)
    os.replace(tmp, model_dir)
    shutil.rmtree(old, ignore_errors=True)
    stamp.write_text(str(archive.resolve()))
    return True
