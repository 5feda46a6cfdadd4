"""Flink without the test suite: ``beam-labelissues flink-job-server`` prints the cached
job server jar, says in one line what is missing when it cannot build one, and
``--runner FlinkRunner`` alone gets the jar, its Flink version and LOOPBACK.

A whole Flink run with only ``--runner FlinkRunner`` is in tests/test_engines.py
(the ``flink-defaults`` case).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile

import pytest

from harness import CLI_COMMAND

from beam_labelissues import flink, runners
from beam_labelissues.validation import UsageError

HAVE_FLINK_TOOLS = shutil.which("mvn") is not None and shutil.which("java") is not None
flink_tools = pytest.mark.skipif(not HAVE_FLINK_TOOLS, reason="the Flink job server needs mvn and java on PATH")


@pytest.fixture(scope="module")
def jar() -> str:
    """The cached jar (fetched with Maven first when the cache is cold: about 40 s, once)."""
    return flink.job_server_jar()


def _subcommand(env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        CLI_COMMAND + ["flink-job-server"], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.mark.flink
@flink_tools
def test_subcommand_prints_the_cached_jar(jar):
    result = _subcommand()
    assert result.returncode == 0, result.stderr
    assert result.stdout == jar + "\n"  # the path alone on stdout, for $(...)
    assert os.path.isfile(jar)
    with zipfile.ZipFile(jar) as archive:  # a jar Java can start: Main-Class names Beam's Flink driver
        manifest = archive.read("META-INF/MANIFEST.MF").decode()
    assert "Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver" in manifest.replace("\r\n ", "")


def test_subcommand_without_maven_and_java_says_so_in_one_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path / "no-tools"), BEAM_LABELISSUES_CACHE=str(tmp_path / "cache"))
    result = _subcommand(env)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: mvn and java not found on PATH: fetching Flink's job server needs Maven and Java "
                     "11 or 17 (e.g. apt-get install openjdk-17-jre-headless maven), or give "
                     "--flink_job_server_jar JAR"], result.stderr


@pytest.mark.flink
@flink_tools
def test_flink_runner_alone_gets_the_jar_its_version_and_loopback(jar):
    assert runners.flink_args(["--runner", "FlinkRunner"]) == [
        "--flink_job_server_jar", jar, "--flink_version", flink.FLINK_VERSION, "--environment_type", "LOOPBACK"]
    assert runners.flink_args(["--runner=flink", "--flink_master=localhost:8081"]) == [
        "--flink_job_server_jar", jar, "--flink_version", flink.FLINK_VERSION, "--environment_type", "LOOPBACK"]
    # What the user gave stays theirs.
    assert runners.flink_args(["--runner=FlinkRunner", "--flink_job_server_jar=/my/job-server.jar"]) == [
        "--environment_type", "LOOPBACK"]
    assert runners.flink_args(["--runner=FlinkRunner", "--environment_type=DOCKER"]) == [
        "--flink_job_server_jar", jar, "--flink_version", flink.FLINK_VERSION]
    assert runners.flink_args(["--runner=FlinkRunner", f"--flink_version={flink.FLINK_VERSION}"]) == [
        "--flink_job_server_jar", jar, "--environment_type", "LOOPBACK"]
    assert runners.flink_args(["--runner=FlinkRunner", "--flink_version=1.20", "--environment_type=LOOPBACK"]) == []
    assert runners.flink_args(["--runner=FlinkRunner", "--job_endpoint=localhost:8099", "--environment_type=EXTERNAL"]) == []
    # Other runners get nothing.
    for other in (["--runner=FnApiRunner"], ["--runner=PortableRunner", "--job_endpoint=embed"], []):
        assert runners.flink_args(other) == []


def test_flink_runner_without_java_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    monkeypatch.setenv("BEAM_LABELISSUES_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match="java is not on PATH"):
        runners.flink_args(["--runner", "FlinkRunner"])


def test_help_names_the_subcommand_and_what_flink_runner_gets():
    result = subprocess.run(CLI_COMMAND + ["--help"], capture_output=True, text=True, timeout=120)
    text = " ".join(result.stdout.split())
    assert "beam-labelissues flink-job-server" in text
    assert f"--flink_version {flink.FLINK_VERSION}" in text and "LOOPBACK" in text
    sub = subprocess.run(CLI_COMMAND + ["flink-job-server", "--help"], capture_output=True, text=True, timeout=120)
    sub_text = " ".join(sub.stdout.split())
    assert sub.returncode == 0 and "BEAM_LABELISSUES_CACHE" in sub_text
    assert f"Beam Java {flink.ASSEMBLED_BEAM_JAVA_VERSION}" in sub_text  # the version pairing it uses
