"""Model archives are untrusted: hostile tars are refused, naming the member, and nothing is
written outside the model dir."""

import io
import os
import tarfile
import time

import pytest

from hpt.serving.archive import ArchiveError, check_members, extract_model


def make_tar(path, members):
    """members: (TarInfo kwargs, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def sandbox(tmp_path):
    """An experiment-like tree: the archive and model dir inside, a victim folder beside."""
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("original")
    exp = tmp_path / "exp" / "job"
    exp.mkdir(parents=True)
    return tmp_path, exp


HOSTILE = {
    "dotdot": ([({"name": "../x"}, b"evil")], "'../x'"),
    "nested-dotdot": ([({"name": "a/../../x"}, b"evil")], "'a/../../x'"),
    "absolute": ([({"name": "/etc/x"}, b"evil")], "'/etc/x'"),
    "symlink-to-root": ([({"name": "root", "type": tarfile.SYMTYPE, "linkname": "/"}, None)],
                        "'root'"),
    "symlink-up": ([({"name": "up", "type": tarfile.SYMTYPE, "linkname": "../../victim"}, None)],
                   "'up'"),
    "symlink-then-file": ([({"name": "d", "type": tarfile.SYMTYPE, "linkname": "."}, None),
                           ({"name": "d/x", }, b"through the link")], "'d/x'"),
    "hardlink-outside": ([({"name": "h", "type": tarfile.LNKTYPE,
                            "linkname": "../victim/keep.txt"}, None)], "'h'"),
    "fifo": ([({"name": "pipe", "type": tarfile.FIFOTYPE}, None)], "'pipe'"),
    "device": ([({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
               "'dev'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_nothing_is_written(sandbox, case):
    tmp_path, exp = sandbox
    members, named = HOSTILE[case]
    # A benign member first: refusal happens before anything is extracted.
    archive = make_tar(exp / "model.tar.gz", [({"name": "ok.txt"}, b"fine")] + members)
    before = snapshot(tmp_path)
    with pytest.raises(ArchiveError) as err:
        extract_model(archive, exp / "serving" / "model")
    assert named in str(err.value) and str(archive) in str(err.value)
    assert snapshot(tmp_path) == before  # not even the model dir or a temp folder remains
    assert (tmp_path / "victim" / "keep.txt").read_text() == "original"
    assert not (tmp_path / "x").exists() and not (tmp_path / "exp" / "x").exists()


def test_symlink_then_file_through_it_outside(sandbox):
    """The classic two-step escape: a link to the parent, then a file written through it."""
    tmp_path, exp = sandbox
    archive = make_tar(exp / "model.tar.gz", [
        ({"name": "l", "type": tarfile.SYMTYPE, "linkname": "../../../victim"}, None),
        ({"name": "l/keep.txt"}, b"overwritten")])
    with pytest.raises(ArchiveError, match="'l'"):
        extract_model(archive, exp / "serving" / "model")
    assert (tmp_path / "victim" / "keep.txt").read_text() == "original"


def test_size_bound(sandbox):
    _, exp = sandbox
    archive = make_tar(exp / "model.tar.gz", [({"name": "big.bin"}, b"x" * 2048)])
    with pytest.raises(ArchiveError, match="big.bin"):
        extract_model(archive, exp / "serving" / "model", max_total_bytes=1024)
    assert not (exp / "serving" / "model").exists()


def test_benign_archive_with_inner_links_extracts_and_is_reextracted_when_newer(sandbox):
    _, exp = sandbox
    archive = make_tar(exp / "model.tar.gz", [
        ({"name": "weights", "type": tarfile.DIRTYPE}, None),
        ({"name": "weights/model.pth"}, b"v1"),
        ({"name": "latest.pth", "type": tarfile.SYMTYPE, "linkname": "weights/model.pth"}, None),
        ({"name": "copy.pth", "type": tarfile.LNKTYPE, "linkname": "weights/model.pth"}, None)])
    model = exp / "serving" / "model"
    assert extract_model(archive, model) is True
    assert (model / "latest.pth").read_bytes() == b"v1" == (model / "copy.pth").read_bytes()
    assert extract_model(archive, model) is False  # up to date: left alone

    time.sleep(0.01)
    make_tar(archive, [({"name": "weights/model.pth"}, b"v2")])
    os.utime(archive, (time.time() + 5, time.time() + 5))  # clearly newer than the stamp
    assert extract_model(archive, model) is True
    assert (model / "weights" / "model.pth").read_bytes() == b"v2"
    assert not (model / "latest.pth").exists()  # the old model is gone, not merged
    assert sorted(p.name for p in model.parent.iterdir()) == [".extracted-from", "model"]


def test_not_a_tar_is_a_clear_error(sandbox):
    _, exp = sandbox
    bad = exp / "model.tar.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(ArchiveError, match="not a readable tar.gz"):
        extract_model(bad, exp / "serving" / "model")
    assert not (exp / "serving" / "model.tmp").exists()


def test_check_members_is_pure_and_judges_links_lexically():
    ok = tarfile.TarInfo("a/b")
    inner = tarfile.TarInfo("a/link")
    inner.type, inner.linkname = tarfile.SYMTYPE, "../c"  # a/../c = c: inside
    check_members([ok, inner], "m.tar.gz")
    out = tarfile.TarInfo("a/out")
    out.type, out.linkname = tarfile.SYMTYPE, "../../c"
    with pytest.raises(ArchiveError, match="'a/out'"):
        check_members([out], "m.tar.gz")
