"""A Flink job server jar for Beam's ``FlinkRunner``, fetched with Maven and cached.

Beam's Python ``FlinkRunner`` talks to a Java job server. Given no
``--flink_job_server_jar``, Beam downloads
``beam-runners-flink-<flink>-job-server:<beam version>`` from Maven Central, which
serves none for recent Beam releases (2.77 among them), so the run fails before it
starts. ``job_server_jar()`` gets one instead, once, into a cache:

1. Beam's own shaded job server for the installed Beam version, if Maven can fetch it;
2. otherwise an equivalent assembled from the newest Beam Java release whose Flink
   runner modules all resolve (``ASSEMBLED_BEAM_JAVA_VERSION``, Flink
   ``FLINK_VERSION``): the unshaded ``beam-runners-flink-<flink>`` module and its
   runtime dependencies in ``lib/``, and a small ``job-server.jar`` whose manifest
   names the driver class and ``lib/*.jar``.

The Python SDK speaks to either only through the portable Job and Fn APIs, with a
LOOPBACK (in-process) worker; the test suite runs every engine on the same data and
checks the answers are identical (tests/test_engines.py, tests/ENGINES_NOTES.md).

``beam-labelissues flink-job-server`` runs ``main()``: the jar's path on stdout,
progress on stderr. Cache: ``$BEAM_LABELISSUES_CACHE/flink``, else
``~/.cache/beam-labelissues/flink`` (Maven's local repository is ``<cache>/m2``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Callable, List, Optional, Sequence, Tuple

from beam_labelissues.validation import LabelIssuesError

FLINK_VERSION = "1.19"
# Maven Central serves beam-runners-flink-1.19 with a complete set of dependencies
# (beam-runners-java-job-service among them) for Beam Java 2.62.0 and no later release
# we could resolve; see tests/ENGINES_NOTES.md.
ASSEMBLED_BEAM_JAVA_VERSION = "2.62.0"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
_MAVEN_OUTPUT_LINES = 15

Progress = Callable[[str], None]


class FlinkJobServerError(LabelIssuesError):
    """No Flink job server jar could be had (Maven or Java missing, or Maven failed)."""


def beam_version() -> str:
    """The installed Apache Beam (Python) version, e.g. ``2.77.0``."""
    return importlib.metadata.version("apache-beam")


def cache_dir() -> str:
    """``$BEAM_LABELISSUES_CACHE/flink``, else ``~/.cache/beam-labelissues/flink``."""
    root = os.environ.get("BEAM_LABELISSUES_CACHE")
    if root:
        return os.path.join(os.path.abspath(os.path.expanduser(root)), "flink")
    return os.path.join(os.path.expanduser("~"), ".cache", "beam-labelissues", "flink")


def shaded_jar_path() -> str:
    """Where Beam's own shaded job server for the installed Beam version is cached."""
    return os.path.join(cache_dir(), f"beam-runners-flink-{FLINK_VERSION}-job-server-{beam_version()}.jar")


def assembled_jar_path() -> str:
    """Where the job server assembled from Beam Java ``ASSEMBLED_BEAM_JAVA_VERSION`` is cached."""
    folder = f"beam-runners-flink-{FLINK_VERSION}-job-server-{ASSEMBLED_BEAM_JAVA_VERSION}"
    return os.path.join(cache_dir(), folder, "job-server.jar")


def cached_jar() -> Optional[str]:
    """The cached job server jar, or None when there is none yet."""
    for path in (shaded_jar_path(), assembled_jar_path()):
        if os.path.isfile(path):
            return path
    return None


def missing_tools() -> List[str]:
    """Which of Maven and Java are not on PATH (both fetch, Java also runs the job server)."""
    return [tool for tool in ("mvn", "java") if shutil.which(tool) is None]


def _quiet(_: str) -> None:
    pass


def job_server_jar(progress: Progress = _quiet) -> str:
    """The local path of a Flink job server jar, for ``--flink_job_server_jar``.

    From the cache when it holds one (instant); otherwise fetched with Maven (the
    first time about 40 s and 350 MB, reported through ``progress``). Raises
    ``FlinkJobServerError`` when Maven or Java is missing or Maven fails.
    """
    cached = cached_jar()
    if cached is not None:
        return cached
    missing = missing_tools()
    if missing:
        raise FlinkJobServerError(
            f"{' and '.join(missing)} not found on PATH: fetching Flink's job server needs Maven and "
            "Java 11 or 17 (e.g. apt-get install openjdk-17-jre-headless maven), or give "
            "--flink_job_server_jar JAR"
        )
    cache = cache_dir()
    os.makedirs(cache, exist_ok=True)
    shaded = shaded_jar_path()
    artifact = f"beam-runners-flink-{FLINK_VERSION}-job-server:{beam_version()}"
    progress(f"fetching Beam's Flink job server {artifact} with Maven into {cache}")
    ok, shaded_output = _fetch_shaded(shaded)
    if ok:
        progress(f"cached {shaded}")
        return shaded
    assembled = assembled_jar_path()
    progress(
        f"Maven Central does not serve {artifact}; assembling a job server from "
        f"beam-runners-flink-{FLINK_VERSION}:{ASSEMBLED_BEAM_JAVA_VERSION} and its runtime "
        "dependencies (first time only: about 40 s and 350 MB)"
    )
    ok, assembled_output = _assemble(os.path.dirname(assembled))
    if ok:
        progress(f"cached {assembled}")
        return assembled
    for name, output in (("shaded job server", shaded_output), ("assembled job server", assembled_output)):
        progress(f"--- Maven, {name} (last lines) ---")
        for line in output.strip().splitlines()[-_MAVEN_OUTPUT_LINES:]:
            progress(line)
    raise FlinkJobServerError(
        f"Maven could not fetch a Flink job server ({artifact}, or "
        f"beam-runners-flink-{FLINK_VERSION}:{ASSEMBLED_BEAM_JAVA_VERSION} to assemble one); "
        "its output is above"
    )


def _mvn(args: List[str], cwd: str) -> Tuple[int, str]:
    command = ["mvn", "-B", "-q", "-Dmaven.repo.local=" + os.path.join(cache_dir(), "m2")] + args
    proc = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, "$ " + " ".join(command) + "\n" + proc.stdout


def _fetch_shaded(target: str) -> Tuple[bool, str]:
    """Beam's own shaded job server jar into ``target``; returns (ok, Maven's output)."""
    artifact = f"org.apache.beam:beam-runners-flink-{FLINK_VERSION}-job-server:{beam_version()}:jar"
    tmp = tempfile.mkdtemp(prefix="shaded-", dir=cache_dir())
    try:
        rc, output = _mvn([DEPENDENCY_PLUGIN + ":copy", "-Dartifact=" + artifact, "-DoutputDirectory=" + tmp], tmp)
        jars = [name for name in os.listdir(tmp) if name.endswith(".jar")]
        if rc != 0 or len(jars) != 1:
            return False, output
        os.replace(os.path.join(tmp, jars[0]), target)
        return True, output
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>beam-labelissues.local</groupId>
  <artifactId>flink-job-server</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.beam</groupId>
      <artifactId>beam-runners-flink-{flink}</artifactId>
      <version>{beam}</version>
    </dependency>
  </dependencies>
</project>
"""


def _manifest(class_path: List[str]) -> str:
    """MANIFEST.MF text; lines wrapped at 72 bytes as the jar specification asks."""
    lines = []
    for header in ("Manifest-Version: 1.0", "Main-Class: " + JOB_SERVER_MAIN, "Class-Path: " + " ".join(class_path)):
        lines.append(header[:72])
        rest = header[72:]
        while rest:
            lines.append(" " + rest[:71])
            rest = rest[71:]
    return "\r\n".join(lines) + "\r\n\r\n"


def _assemble(target_dir: str) -> Tuple[bool, str]:
    """``beam-runners-flink-<v>`` and its runtime dependencies into ``target_dir``/lib, and
    ``target_dir``/job-server.jar to launch them; returns (ok, Maven's output)."""
    tmp = tempfile.mkdtemp(prefix="assemble-", dir=cache_dir())
    try:
        with open(os.path.join(tmp, "pom.xml"), "w", encoding="utf-8") as handle:
            handle.write(_POM.format(flink=FLINK_VERSION, beam=ASSEMBLED_BEAM_JAVA_VERSION))
        lib = os.path.join(tmp, "lib")
        rc, output = _mvn(
            [DEPENDENCY_PLUGIN + ":copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory=" + lib], tmp
        )
        if rc != 0 or not os.path.isdir(lib):
            return False, output
        jars = sorted(name for name in os.listdir(lib) if name.endswith(".jar"))
        with zipfile.ZipFile(os.path.join(tmp, "job-server.jar"), "w") as archive:
            archive.writestr("META-INF/MANIFEST.MF", _manifest(["lib/" + jar for jar in jars]))
        try:
            os.rename(tmp, target_dir)  # atomic: a half-built folder is never taken for the cache
        except OSError:
            if not os.path.isfile(os.path.join(target_dir, "job-server.jar")):
                raise  # not a concurrent builder that finished first
        return True, output
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_parser(prog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,
        description=(
            "Print the path of a Flink job server jar for --runner FlinkRunner "
            "(--flink_job_server_jar), fetching it with Maven the first time (needs Maven and "
            f"Java 11 or 17; about 40 s and 350 MB) into {cache_dir()} "
            "(set BEAM_LABELISSUES_CACHE to move it). It is Beam's own "
            f"beam-runners-flink-{FLINK_VERSION}-job-server:{beam_version()} when Maven can fetch "
            f"it, else one assembled from Beam Java {ASSEMBLED_BEAM_JAVA_VERSION}'s "
            f"beam-runners-flink-{FLINK_VERSION} (Flink {FLINK_VERSION}), which this package's "
            "tests run with the installed Python SDK. --runner FlinkRunner without "
            "--flink_job_server_jar uses it on its own."
        ),
    )


def main(argv: Sequence[str], prog: str = "flink-job-server") -> int:
    """The ``flink-job-server`` subcommand: the jar's path on stdout, progress on stderr."""
    build_parser(prog).parse_args(list(argv))

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        path = job_server_jar(progress)
    except FlinkJobServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
