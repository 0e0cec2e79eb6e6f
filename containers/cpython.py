"""A CPython the machine lacks, built once from source taken from Debian's registry.

pyenv on these machines has 3.10-3.13; numerai-predict's newest image is Python 3.14.
Debian carries CPython 3.14 as the source package python3.14, whose .orig tarball is
python.org's release unchanged. The twin downloads that tarball from Debian's pool (a
registry reachable here), checks it against the digest pinned below (the trust anchor:
no signature keyring is needed, and a mirror that serves other bytes is refused),
builds it into the project's cache and reuses it from then on.

Only a version the pool actually serves can be pinned: Debian's mirrors drop superseded
uploads, so `SOURCES` names one that was fetchable on the day it was pinned.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

POOL = "http://deb.debian.org/debian/pool/main/p"
# minor -> (version, sha256 of Debian's python3.X_<version>.orig.tar.xz).
SOURCES = {
    "3.14": ("3.14.7", "3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81"),
}
# Like pyenv's and the python:3.X images' builds: a shared libpython, no pip (environments
# get exactly their locked packages), no test suite compiled.
CONFIGURE = ["--enable-shared", "--without-ensurepip", "--disable-test-modules"]


class BuildError(Exception):
    pass


def buildable(minor: str) -> bool:
    return minor in SOURCES


def source_url(minor: str) -> str:
    version, _ = SOURCES[minor]
    return f"{POOL}/python{minor}/python{minor}_{version}.orig.tar.xz"


def installed(cache_dir: str, minor: str) -> str | None:
    """The built interpreter, if a previous build finished (its stamp is written last)."""
    if minor not in SOURCES:
        return None
    version, _ = SOURCES[minor]
    prefix = os.path.join(cache_dir, f"cpython-{version}")
    python = os.path.join(prefix, "bin", f"python{minor}")
    return python if os.path.exists(os.path.join(prefix, ".built")) and os.access(python, os.X_OK) else None


def build(cache_dir: str, minor: str) -> str:
    """Download, verify, configure, make and install CPython ``minor`` into ``cache_dir``;
    returns its interpreter. The caller holds the build lock."""
    done = installed(cache_dir, minor)
    if done:
        return done
    version, digest = SOURCES[minor]
    prefix = os.path.join(cache_dir, f"cpython-{version}")
    shutil.rmtree(prefix, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="cpython-") as work:
        tarball = download(source_url(minor), digest, work)
        with tarfile.open(tarball) as archive:
            archive.extractall(work, filter="data")
        tree = os.path.join(work, f"Python-{version}")
        jobs = str(len(os.sched_getaffinity(0)))
        # The interpreter finds libpython in its own prefix, wherever the caller runs it from.
        flags = [f"--prefix={prefix}", f"LDFLAGS=-Wl,-rpath,{prefix}/lib", *CONFIGURE]
        step(["./configure", "--quiet", *flags], tree, f"configuring CPython {version}")
        step(["make", "-s", "-j", jobs], tree, f"compiling CPython {version} ({jobs} jobs)")
        step(["make", "-s", "install"], tree, f"installing CPython {version}")
    python = os.path.join(prefix, "bin", f"python{minor}")
    os.symlink(f"python{minor}", os.path.join(prefix, "bin", "python"))  # as pyenv's and the images' have
    missing = missing_modules(python)
    if missing:
        raise BuildError(f"CPython {version} built without {', '.join(missing)}: install their -dev packages "
                         "(libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev libsqlite3-dev uuid-dev)")
    with open(os.path.join(prefix, ".built"), "w") as stamp:
        stamp.write(f"{version} {digest}\n")
    return python


def download(url: str, digest: str, folder: str) -> str:
    path = os.path.join(folder, os.path.basename(url))
    print(f"cpython: downloading {url}", file=sys.stderr)
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
            while chunk := response.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
    except OSError as error:
        raise BuildError(f"could not download {url}: {error}") from error
    if sha.hexdigest() != digest:
        raise BuildError(f"{url} has sha256 {sha.hexdigest()}, not the pinned {digest}")
    return path


def step(command: list[str], cwd: str, what: str) -> None:
    print(f"cpython: {what}", file=sys.stderr)
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


# The modules environments need that CPython skips silently when a -dev package is missing.
NEEDED = ("ssl", "_ctypes", "zlib", "bz2", "lzma", "sqlite3", "_uuid", "_decimal")


def missing_modules(python: str) -> list[str]:
    probe = ("import importlib, sys\nfor m in sys.argv[1:]:\n"
             "    try: importlib.import_module(m)\n    except ImportError: print(m)")
    result = subprocess.run([python, "-c", probe, *NEEDED], capture_output=True, text=True)
    return result.stdout.split() if result.returncode == 0 else list(NEEDED)
