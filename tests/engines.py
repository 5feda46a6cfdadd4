"""Helpers that let the test suite run a pipeline on several Beam engines.

No tests live here. ``ENGINES`` maps an engine name to a function returning the
extra pipeline arguments for it; ``flink_job_server_jar()`` returns a local Flink
job server jar, fetched with Maven into a cache on first use;
``flink_restart_args()`` makes a Flink job retry failed tasks.
What was verified, and why these choices: tests/ENGINES_NOTES.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile

# Beam's shaded job server for this Beam release is tried first. Maven Central as
# reached here serves no beam-runners-flink-*-job-server at all, so we then assemble
# an equivalent: the unshaded runner module plus its runtime dependencies, at the
# newest Beam version whose modules all resolve (2.62.0), and a launcher jar whose
# manifest names the driver class and lib/*.jar. The Python SDK (2.77.0) talks to it
# only through the portable Job and Fn APIs, with a LOOPBACK (in-process) worker.
FLINK_VERSION = "1.19"
BEAM_JAVA_VERSION = "2.77.0"
ASSEMBLED_BEAM_JAVA_VERSION = "2.62.0"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"


def cache_dir() -> str:
    """$BEAM_LABELISSUES_CACHE/flink, else ~/.cache/beam-labelissues/flink."""
    root = os.environ.get("BEAM_LABELISSUES_CACHE")
    if root:
        return os.path.join(os.path.abspath(os.path.expanduser(root)), "flink")
    return os.path.join(os.path.expanduser("~"), ".cache", "beam-labelissues", "flink")


def _mvn(args: list[str], cwd: str) -> tuple[int, str]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is not on PATH; it fetches the Flink job server.")
    cmd = [mvn, "-B", "-q", "-Dmaven.repo.local=" + os.path.join(cache_dir(), "m2")] + args
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    return proc.returncode, "$ " + " ".join(cmd) + "\n" + proc.stdout


def _fetch_shaded(target: str) -> tuple[bool, str]:
    """Beam's own shaded job server jar into ``target``; returns (ok, Maven's output)."""
    artifact = "org.apache.beam:beam-runners-flink-%s-job-server:%s:jar" % (
        FLINK_VERSION, BEAM_JAVA_VERSION)
    tmp = tempfile.mkdtemp(prefix="shaded-", dir=cache_dir())
    try:
        rc, out = _mvn([DEPENDENCY_PLUGIN + ":copy", "-Dartifact=" + artifact,
                        "-DoutputDirectory=" + tmp], cwd=tmp)
        jars = [f for f in os.listdir(tmp) if f.endswith(".jar")]
        if rc != 0 or len(jars) != 1:
            return False, out
        os.replace(os.path.join(tmp, jars[0]), target)
        return True, out
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


def _manifest(class_path: list[str]) -> str:
    """MANIFEST.MF text; lines wrapped at 72 bytes as the jar spec asks."""
    lines = []
    for header in ("Manifest-Version: 1.0", "Main-Class: " + JOB_SERVER_MAIN,
                   "Class-Path: " + " ".join(class_path)):
        lines.append(header[:72])
        rest = header[72:]
        while rest:
            lines.append(" " + rest[:71])
            rest = rest[71:]
    return "\r\n".join(lines) + "\r\n\r\n"


def _assemble(target_dir: str) -> tuple[bool, str]:
    """beam-runners-flink-<v> and its runtime dependencies into ``target_dir``/lib, and
    ``target_dir``/job-server.jar to launch them; returns (ok, Maven's output)."""
    tmp = tempfile.mkdtemp(prefix="assemble-", dir=cache_dir())
    try:
        with open(os.path.join(tmp, "pom.xml"), "w") as f:
            f.write(_POM.format(flink=FLINK_VERSION, beam=ASSEMBLED_BEAM_JAVA_VERSION))
        lib = os.path.join(tmp, "lib")
        rc, out = _mvn([DEPENDENCY_PLUGIN + ":copy-dependencies", "-DincludeScope=runtime",
                        "-DoutputDirectory=" + lib], cwd=tmp)
        if rc != 0 or not os.path.isdir(lib):
            return False, out
        jars = sorted(f for f in os.listdir(lib) if f.endswith(".jar"))
        with zipfile.ZipFile(os.path.join(tmp, "job-server.jar"), "w") as zf:
            zf.writestr("META-INF/MANIFEST.MF", _manifest(["lib/" + j for j in jars]))
        try:
            os.rename(tmp, target_dir)  # atomic: a half-built folder is never seen as cached
        except OSError:
            if not os.path.isfile(os.path.join(target_dir, "job-server.jar")):
                raise  # not a concurrent builder that finished first
        return True, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def flink_job_server_jar() -> str:
    """Local path of a Flink job server jar, for --flink_job_server_jar.

    Uses the cache when it holds one; otherwise fetches Beam's shaded
    beam-runners-flink-1.19-job-server:2.77.0 and, when Maven Central does not serve
    it, assembles one from the Beam 2.62.0 modules (first time about 40 s, 350 MB).
    Raises RuntimeError with Maven's output when neither can be had.
    """
    cache = cache_dir()
    shaded = os.path.join(
        cache, "beam-runners-flink-%s-job-server-%s.jar" % (FLINK_VERSION, BEAM_JAVA_VERSION))
    assembled_dir = os.path.join(
        cache, "beam-runners-flink-%s-job-server-%s" % (FLINK_VERSION, ASSEMBLED_BEAM_JAVA_VERSION))
    assembled = os.path.join(assembled_dir, "job-server.jar")
    for path in (shaded, assembled):
        if os.path.isfile(path):
            return path
    os.makedirs(cache, exist_ok=True)
    ok, shaded_out = _fetch_shaded(shaded)
    if ok:
        return shaded
    ok, assembled_out = _assemble(assembled_dir)
    if ok:
        return assembled
    raise RuntimeError("Could not fetch a Flink job server jar with Maven.\n"
                       "--- shaded job server ---\n%s\n--- assembled job server ---\n%s"
                       % (shaded_out, assembled_out))


def flink_restart_args(conf_dir: str, attempts: int = 3, delay: str = "1 s") -> list[str]:
    """Write a Flink config with a fixed-delay restart strategy into ``conf_dir`` and
    return the pipeline args that make the Flink job use it (Flink's default for a
    batch job is no restart; Beam's --number_of_execution_retries is streaming-only)."""
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "flink-conf.yaml"), "w") as f:
        f.write("restart-strategy.type: fixed-delay\n"
                "restart-strategy.fixed-delay.attempts: %d\n"
                "restart-strategy.fixed-delay.delay: %s\n" % (attempts, delay))
    return ["--flink_conf_dir", conf_dir]


def _fnapi() -> list[str]:
    return ["--runner", "FnApiRunner"]


def _multiprocess() -> list[str]:
    return _fnapi() + ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def _portable() -> list[str]:
    return ["--runner", "PortableRunner", "--job_endpoint", "embed",
            "--environment_type", "LOOPBACK"]


def _flink() -> list[str]:
    return ["--runner", "FlinkRunner", "--flink_master", "[local]",
            "--flink_version", FLINK_VERSION, "--flink_job_server_jar", flink_job_server_jar(),
            "--parallelism", "2", "--environment_type", "LOOPBACK"]


ENGINES = {
    "fnapi": _fnapi,
    "multiprocess": _multiprocess,
    "portable": _portable,
    "flink": _flink,
}
