"""What a packager gets: an sdist holding every file the repository tracks (so its tests
run from it), a wheel carrying the licence and the extras the README promises, and
``s3://`` paths handled once the ``aws`` extra is installed.

The sdist and the wheel are built once, into a temporary folder: the sdist by setuptools
from this tree (its egg-info kept out of the tree), the wheel by pip from that sdist.
"""

from __future__ import annotations

import contextlib
import email
import fcntl
import fnmatch
import glob
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
from apache_beam.io.filesystems import FileSystems

from harness import REPO_ROOT

from beam_labelissues._version import __version__

# setuptools builds the sdist in a folder of the repository root, which a listing of the
# repository made meanwhile would see: the build and the listing hold a lock shared by the
# xdist workers (xdist_group alone does not keep tests on one worker with pytest 9).
pytestmark = pytest.mark.xdist_group("packaging")

# Files setuptools adds to every sdist.
SDIST_GENERATED = {"PKG-INFO", "setup.cfg"}


def _ignored(path: str, is_dir: bool, patterns) -> bool:
    """Whether .gitignore's patterns (this repository's kind: no negations) name ``path``."""
    for pattern in patterns:
        if pattern.endswith("/") and not is_dir:
            continue
        pattern = pattern.rstrip("/")
        if "/" in pattern.lstrip("/"):
            if fnmatch.fnmatch(path, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatch(os.path.basename(path), pattern):
            return True
    return False


def _repository_files():
    """The files git tracks or would (untracked but not ignored). Without git (.ci/run tests
    a copy of the checkout without .git; an unpacked sdist), the files on disk less those
    .gitignore names."""
    if shutil.which("git") is not None and os.path.exists(os.path.join(REPO_ROOT, ".git")):
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        return {path for path in listed if os.path.isfile(os.path.join(REPO_ROOT, path))}
    with open(os.path.join(REPO_ROOT, ".gitignore"), encoding="utf-8") as handle:
        patterns = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    files = set()
    for folder, subfolders, names in os.walk(REPO_ROOT):
        relative = os.path.relpath(folder, REPO_ROOT)
        relative = "" if relative == "." else relative
        subfolders[:] = [d for d in subfolders if not _ignored(os.path.join(relative, d), True, patterns)]
        files.update(os.path.join(relative, n) for n in names if not _ignored(os.path.join(relative, n), False, patterns))
    return files


def _generated_by_sdist(path: str) -> bool:
    return path in SDIST_GENERATED or path.startswith("beam_labelissues.egg-info/")


def _can_build_wheels_offline() -> bool:
    """setuptools builds wheels itself from 70.1 on, before that with the wheel package."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor = (int(part) for part in importlib.metadata.version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1)


@contextlib.contextmanager
def _repository_lock(tmp_path_factory):
    """Held while this test session (any xdist worker) builds in or lists the repository."""
    with open(tmp_path_factory.getbasetemp().parent / "packaging.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist path, wheel path, the repository's files as listed while nothing was building)."""
    with _repository_lock(tmp_path_factory):
        return _build_dists(tmp_path_factory) + (_repository_files(),)


def _build_dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    egg_base = out / "egg-info"
    egg_base.mkdir()
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg_base), "sdist", "--dist-dir", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (sdist,) = glob.glob(str(out / "*.tar.gz"))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out)]
    if _can_build_wheels_offline():
        pip.append("--no-build-isolation")  # else pip fetches setuptools and wheel to build with
    built = subprocess.run(pip + [sdist], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = glob.glob(str(out / "*.whl"))
    return (sdist, wheel)


def test_sdist_holds_every_tracked_file_and_nothing_else(dists):
    sdist, _, repository_files = dists
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if member.isfile()]
    top = f"beam-labelissues-{__version__}/"
    assert all(name.startswith(top) for name in names), names[:5]
    files = {name[len(top):] for name in names}
    files = {f for f in files if not _generated_by_sdist(f)}
    for needed in ("LICENSE", "README.md", "setup.py", "pytest.ini", "tests/conftest.py",
                   "tests/data/label_errors/cifar10_test_set_pred_probs.npy", "templates/metadata.json",
                   "pipelines/find_label_issues.py", "beam_labelissues/demo_data/mnist_test_set_labels.npy"):
        assert needed in files, needed
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    tracked = {f for f in repository_files if not _generated_by_sdist(f)}
    assert files == tracked, {"missing from the sdist": sorted(tracked - files), "extra": sorted(files - tracked)}


def test_wheel_carries_the_license_and_the_extras(dists):
    _, wheel, _ = dists
    with open(os.path.join(REPO_ROOT, "LICENSE"), encoding="utf-8") as handle:
        license_text = handle.read()
    assert license_text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in license_text
    info = f"beam_labelissues-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        # Older setuptools put it in .dist-info/, newer ones (PEP 639) in .dist-info/licenses/.
        licenses = [n for n in names if n in (f"{info}/LICENSE", f"{info}/licenses/LICENSE")]
        assert len(licenses) == 1, [n for n in names if n.startswith(info)]
        assert archive.read(licenses[0]).decode("utf-8") == license_text
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "LICENSE" in metadata.get_all("License-File")
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"gcp", "aws", "report", "test"} <= extras
    requires = metadata.get_all("Requires-Dist")
    assert any(r.replace(" ", "").startswith("apache-beam[aws]") and 'extra=="aws"' in r.replace(" ", "")
               for r in requires), requires
    assert "beam-labelissues = beam_labelissues.cli:run_and_exit" in entry_points


def test_s3_paths_have_a_filesystem_and_the_aws_extra_exists():
    """Offline: Beam registers its S3 filesystem for s3:// (boto3, from apache-beam[aws],
    is needed only to reach a bucket), and apache-beam offers the aws extra ours names."""
    from apache_beam.io.aws.s3filesystem import S3FileSystem

    assert isinstance(FileSystems.get_filesystem("s3://bucket/label_issues"), S3FileSystem)
    assert "aws" in importlib.metadata.metadata("apache-beam").get_all("Provides-Extra")
