"""Builds the CNN trainer's images with no registry: hpt-cnn:latest and hpt-cnn:pytorch-toolkit.

    python scripts/build_images.py                       # a local Debian base, torch from here
    python scripts/build_images.py --base python:3.11-slim --torch-index-url \\
        https://download.pytorch.org/whl/cpu             # where a registry and the index exist

The base (`--base local`, the default) is a minimal Debian root filesystem made by debootstrap
from the machine's Debian mirror and `docker import`ed as hpt-base:bookworm; the root
filesystem is kept as a tarball in ~/.cache/hpt so that a new engine imports it in seconds.
torch is the wheel pip finds for the torch beside this script (or `--torch`), served to the
build over HTTP on 127.0.0.1; everything else comes from the package index through
`--network host`. The machine's CA bundle goes into the base, so pip's TLS check passes
behind a proxy that re-signs traffic. Prints one JSON line of timings at the end.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CNN = ROOT / "trainers" / "cnn"
LOCAL_BASE = "hpt-base:bookworm"
SUITE = "bookworm"
# What the trainer's Dockerfile needs of a base: python3 with venv, apt, TLS roots.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGES = ("hpt-cnn:latest", "hpt-cnn:pytorch-toolkit")
WHEEL_PORT = 47831


class BuildError(Exception):
    """A step that cannot be done here, with the fix."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", default="docker", help="docker (default) or podman")
    p.add_argument("--base", default="local",
                   help=f"'local' ({LOCAL_BASE} from debootstrap) or an image name")
    p.add_argument("--mirror", default=None, help="Debian mirror for debootstrap (default: "
                   "the first one apt uses here, else deb.debian.org)")
    p.add_argument("--torch", default=None, help="torch requirement (default: the version "
                   "installed beside this script, else any torch)")
    p.add_argument("--torch-index-url", default="", help="index for torch ('' = pip's own "
                   "configuration, which finds the wheel this machine keeps)")
    p.add_argument("--python-version", default=None, help="the base's Python (major.minor) "
                   "that torch's wheel must fit (default: 3.11 for the local base, else this "
                   "interpreter's)")
    p.add_argument("--only", choices=IMAGES, help="build one image only")
    p.add_argument("--rebuild-base", action="store_true", help="make the root filesystem anew")
    return p.parse_args(argv)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, check=True, **kwargs)


def has_image(engine: str, image: str) -> bool:
    return subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode == 0


def apt_mirror() -> str:
    """The Debian archive apt is configured with (deb822 or one-line sources); other
    repositories (security, third-party ones such as a Node.js source) are skipped."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            for word in line.split():
                if "://" in word and word.rstrip("/").endswith("/debian"):
                    return word
    return "http://deb.debian.org/debian"


def rootfs_tarball(mirror: str, rebuild: bool) -> Path:
    """The cached root filesystem, made with debootstrap when missing (needs root)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hpt"
    tarball = cache / f"base-{SUITE}.tar"
    if tarball.exists() and not rebuild:
        return tarball
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed: apt-get install debootstrap, or name "
                         "a base image that has python3 with --base (e.g. python:3.11-slim)")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root: run as root, or name a base with --base")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as work:
        root = Path(work) / "root"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(root), mirror], stdout=subprocess.DEVNULL)
        if CA_BUNDLE.exists():  # this machine's roots: a proxy's CA included
            shutil.copyfile(CA_BUNDLE, root / CA_BUNDLE.relative_to("/"))
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(root), "-cf", str(partial), "."])
        partial.replace(tarball)
    return tarball


def import_base(engine: str, tarball: Path) -> None:
    # pip inside the build reads the bundle too (PIP_CERT): its own roots lack a proxy's CA.
    with tarball.open("rb") as stream:
        run([engine, "import", "--change", f"ENV PIP_CERT={CA_BUNDLE}",
             "--change", "ENV LANG=C.UTF-8", "-", LOCAL_BASE], stdin=stream,
            stdout=subprocess.DEVNULL)


def torch_requirement(given: str | None) -> str:
    """The torch the images get: the release installed here. Its public version only: a
    build's local label (`2.14.1+cu130`, `2.13.0+cpu`) names no release an index serves, and
    `==2.14.1` matches whichever build of 2.14.1 pip finds (PEP 440)."""
    if given:
        return given
    try:
        import torch
    except ImportError:
        return "torch>=2.1"
    return f"torch=={torch.__version__.split('+', 1)[0]}"


def download_torch(requirement: str, index_url: str, python: str, folder: Path) -> None:
    """The wheel pip would install here (a local file, a mirror, the index), into `folder`."""
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
            "--python-version", python, "-d", str(folder), requirement]
    if index_url:
        argv += ["--index-url", index_url]
    run(argv, stdout=subprocess.DEVNULL)


@functools.cache
def _quiet_handler(folder: str):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=folder, **kwargs)

        def log_message(self, *args):  # pip's requests are not news
            pass

    return Handler


def serve_folder(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A page of links to `folder`'s wheels on 127.0.0.1, what pip's --find-links reads.

    On the same port each time where it is free: the address is a build argument, and a
    new one would invalidate the engine's cache of the torch layer (minutes to rebuild)."""
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEEL_PORT),
                                                 _quiet_handler(str(folder)))
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def build(engine: str, tag: str, dockerfile: Path, build_args: dict[str, str]) -> None:
    argv = [engine, "build", "--network", "host", "-t", tag, "-f", str(dockerfile)]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    run(argv + [str(CNN)])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    timings: dict[str, float] = {}
    began = time.monotonic()
    try:
        base = args.base
        if base == "local":
            base = LOCAL_BASE
            if args.rebuild_base or not has_image(args.engine, LOCAL_BASE):
                tarball = rootfs_tarball(args.mirror or apt_mirror(), args.rebuild_base)
                timings["rootfs_s"] = round(time.monotonic() - began, 1)
                import_base(args.engine, tarball)
                timings["base_s"] = round(time.monotonic() - began, 1)
        with tempfile.TemporaryDirectory() as wheels:
            step = time.monotonic()
            torch_spec = torch_requirement(args.torch)
            python = args.python_version or ("3.11" if args.base == "local" else
                                             "%d.%d" % sys.version_info[:2])
            if args.only != IMAGES[1]:  # the toolkit image adds no torch
                download_torch(torch_spec, args.torch_index_url, python, Path(wheels))
            server, links = serve_folder(Path(wheels))
            timings["torch_wheel_s"] = round(time.monotonic() - step, 1)
            try:
                if args.only in (None, IMAGES[0]):
                    step = time.monotonic()
                    build(args.engine, IMAGES[0], CNN / "Dockerfile", {
                        "BASE": base, "TORCH": torch_spec, "PIP_FIND_LINKS": links,
                        "TORCH_INDEX_URL": args.torch_index_url})
                    timings[f"{IMAGES[0]}_s"] = round(time.monotonic() - step, 1)
                if args.only in (None, IMAGES[1]):
                    step = time.monotonic()
                    build(args.engine, IMAGES[1], CNN / "Dockerfile.pytorch-toolkit",
                          {"BASE": IMAGES[0], "PIP_FIND_LINKS": links})
                    timings[f"{IMAGES[1]}_s"] = round(time.monotonic() - step, 1)
            finally:
                server.shutdown()
    except BuildError as exc:
        print(f"build_images: {exc}", file=sys.stderr)
        return 2
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"build_images: {exc}", file=sys.stderr)
        return 1
    timings["total_s"] = round(time.monotonic() - began, 1)
    print(json.dumps({"images": [i for i in IMAGES if args.only in (None, i)],
                      "base": base, "torch": torch_spec, **timings}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
