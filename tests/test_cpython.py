"""containers/cpython.py: a CPython the machine lacks, from Debian's source package, trusted only
by its pinned digest (the build itself is measured by .ci/run, which builds py314 from it)."""

from __future__ import annotations

import hashlib
import os

import cpython
import pytest


def test_a_download_with_other_bytes_is_refused(server, tmp_path):
    good = b"the release tarball"
    url = server.route("/python3.14_3.14.7.orig.tar.xz", (200, b"a mirror's other bytes"))
    with pytest.raises(cpython.BuildError, match="not the pinned"):
        cpython.download(url, hashlib.sha256(good).hexdigest(), str(tmp_path))
    url = server.route("/python3.14_3.14.7.orig.tar.xz", (200, good))
    path = cpython.download(url, hashlib.sha256(good).hexdigest(), str(tmp_path))
    assert open(path, "rb").read() == good


def test_an_unreachable_source_is_a_clear_error(server, tmp_path):
    url = server.route("/gone.tar.xz", (404, b"Not Found"))
    with pytest.raises(cpython.BuildError, match="could not download"):
        cpython.download(url, "0" * 64, str(tmp_path))


def test_only_a_finished_build_counts(tmp_path):
    """The stamp is written last: an interrupted build (an interpreter, no stamp) is built again."""
    version, _ = cpython.SOURCES["3.14"]
    bin_dir = tmp_path / f"cpython-{version}" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python3.14"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    assert cpython.installed(str(tmp_path), "3.14") is None
    (tmp_path / f"cpython-{version}" / ".built").write_text("done\n")
    assert cpython.installed(str(tmp_path), "3.14") == str(python)
    assert cpython.installed(str(tmp_path), "3.99") is None and not cpython.buildable("3.99")


def test_the_pinned_source_is_debians_pool():
    assert cpython.source_url("3.14").startswith("http://deb.debian.org/debian/pool/main/p/python3.14/")
    assert os.path.basename(cpython.source_url("3.14")).endswith(".orig.tar.xz")
