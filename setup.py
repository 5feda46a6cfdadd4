"""beam-labelissues: confident learning (cleanlab's find_label_issues_batched) on Apache Beam."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as handle:
        return handle.read()


def version():
    namespace = {}
    exec(read(os.path.join("beam_labelissues", "_version.py")), namespace)
    return namespace["__version__"]


setup(
    name="beam-labelissues",
    version=version(),
    description="Find label issues in classification datasets of any size with Apache Beam",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.9",
    packages=find_packages(include=["beam_labelissues", "beam_labelissues.*"]),
    package_data={"beam_labelissues": ["demo_data/*"]},
    include_package_data=True,
    entry_points={"console_scripts": ["beam-labelissues = beam_labelissues.cli:run_and_exit"]},
    install_requires=[
        "apache-beam>=2.60",
        "numpy>=1.24",
        "pyarrow>=14",
    ],
    extras_require={
        # cleanlab is the test oracle only; it is never imported at run time.
        # report.html needs nothing beyond the package (inline SVG, inline script); the
        # extra stays for the commands that name it. With Pillow installed, thumbnails of
        # local images are scaled down (without it, small image files are embedded as is).
        "report": [],
        # apache-beam[gcp] lets tests/test_template.py translate the pipeline for
        # DataflowRunner offline (about 40 s to install from PyPI).
        "test": [
            "apache-beam[gcp]>=2.60",
            "cleanlab==2.9.0",
            # tests/test_parquet_layouts.py writes Parquet as pandas does.
            "pandas>=1.5",
            "pillow>=9",
            "pytest>=7",
            "pytest-xdist>=3",
            "zarr>=3; python_version >= '3.11'",
            # the README's RunInference example (a scikit-learn model handler).
            "scikit-learn>=1.0",
        ],
        # Zarr input (find_label_issues_batched, io/zarr_input.py); zarr 3 needs Python 3.11+.
        "zarr": ["zarr>=3"],
        "gcp": ["apache-beam[gcp]>=2.60"],
        # s3:// paths (boto3).
        "aws": ["apache-beam[aws]>=2.60"],
        # benchmarks/run_benchmark.py: cleanlab to compare with, psutil to measure the process tree,
        # (report.html, which our CLI writes by default and the benchmark measures, needs nothing more.)
        "bench": ["cleanlab==2.9.0", "psutil>=5"],
    },
)
