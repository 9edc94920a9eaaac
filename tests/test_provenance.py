import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

import imitate
from imitate.io.parquet import read_metadata, write_table
from imitate.provenance import (
    PARQUET_KEY,
    describe_input,
    directory_digest,
    lineage,
    read_record,
    sidecar_path,
    stage_run,
)


def _package_source_sha256() -> str:
    """What a record's ``code_sha256`` claims to be: sha256 over every .py and .yaml file of the installed
    ``imitate`` package, in path order, each as its relative path, a NUL, its bytes and a NUL."""
    root = Path(imitate.__file__).resolve().parent
    files = sorted(
        (p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()),
        key=lambda p: p.relative_to(root).parts,
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def test_stage_run_stamps_parquet_and_writes_sidecars(tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text("a,b\n1,2\n")
    out = tmp_path / "out.parquet"
    with stage_run("demo", inputs={"raw": raw}, settings={"k": 1}, outputs=[out], run_id="r1", seeds={"s": 3}) as run:
        write_table(pa.table({"x": [1, 2]}), out, run.parquet_metadata())
    stable = json.loads(read_metadata(out)[PARQUET_KEY])
    assert stable["stage"] == "demo" and stable["run_id"] == "r1" and stable["seeds"] == {"s": 3}
    assert stable["inputs"]["raw"]["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert {"torch", "pyarrow", "python"} <= set(stable["versions"])
    assert stable["code_sha256"] == _package_source_sha256()
    assert stable["settings_sha256"] == hashlib.sha256(b'{"k":1}').hexdigest()  # canonical JSON of the settings
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["outputs"][0]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sidecar["run"]["started"] <= sidecar["run"]["ended"]


def test_parquet_outputs_stay_byte_identical_across_runs(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("x")
    digests = []
    for _ in range(2):
        out = tmp_path / "o.parquet"
        with stage_run("s", inputs={"raw": raw}, settings={}, outputs=[out]) as run:
            write_table(pa.table({"x": [1]}), out, run.parquet_metadata())
        digests.append(describe_input(out)["sha256"])
    assert digests[0] == digests[1]


def test_no_sidecar_when_the_stage_fails(tmp_path):
    out = tmp_path / "o.parquet"
    try:
        with stage_run("s", inputs={}, settings={}, outputs=[out]):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not sidecar_path(out).exists()


def test_directory_digest_changes_with_content_listing(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("1")
    first = directory_digest(tmp_path)
    (tmp_path / "a" / "g.txt").write_text("22")
    second = directory_digest(tmp_path)
    assert first["n_files"] == 1 and second["n_files"] == 2
    assert first["listing_sha256"] != second["listing_sha256"]


def test_lineage_walks_down_to_raw_inputs(tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text("1")
    mid, top = tmp_path / "mid.parquet", tmp_path / "top.parquet"
    with stage_run("first", inputs={"raw": raw}, settings={}, outputs=[mid]) as run:
        write_table(pa.table({"x": [1]}), mid, run.parquet_metadata())
    with stage_run("second", inputs={"mid": mid}, settings={}, outputs=[top]) as run:
        write_table(pa.table({"x": [2]}), top, run.parquet_metadata())
    tree = lineage(top)
    assert tree["stage"] == "second"
    assert tree["inputs"]["mid"]["stage"] == "first"
    assert tree["inputs"]["mid"]["inputs"]["raw"]["sha256"] == describe_input(raw)["sha256"]
    assert read_record(raw) is None


def test_module_closure_follows_package_imports_only(tmp_path):
    from imitate.provenance.code import module_closure, stage_code_sha256

    pkg = tmp_path / "imitate"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import json\nfrom imitate.sub import b\n\ndef f():\n    import imitate.c\n")
    (pkg / "sub" / "b.py").write_text("X = 1\n")
    (pkg / "c.py").write_text("Y = 2\n")
    (pkg / "unused.py").write_text("Z = 3\n")
    names = [p.relative_to(pkg).as_posix() for p in module_closure("imitate.a", pkg)]
    assert names == ["__init__.py", "a.py", "c.py", "sub/__init__.py", "sub/b.py"]
    before = stage_code_sha256("imitate.a", pkg)
    (pkg / "unused.py").write_text("Z = 4\n")
    stage_code_sha256.cache_clear()
    assert stage_code_sha256("imitate.a", pkg) == before
    (pkg / "sub" / "b.py").write_text("X = 2\n")
    stage_code_sha256.cache_clear()
    assert stage_code_sha256("imitate.a", pkg) != before


def test_device_info_does_not_import_torch_for_cpu_stages() -> None:
    code = (
        "import sys; from imitate.provenance.record import device_info; info = device_info(); "
        "print('torch' in sys.modules, info['cpu_count'] > 0, info['gpu'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "None"]
