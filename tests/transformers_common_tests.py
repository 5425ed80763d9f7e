"""transformers' own common model tests (`tests/test_modeling_common.py`: `ModelTesterMixin`) of the installed
release.

transformers does not install its tests; its source distribution on PyPI holds them. The first use downloads that
sdist (`pip download transformers==<installed> --no-binary :all: --no-deps`) and keeps the test files under
`~/.cache/modeling_eat/` (or `$MODELING_EAT_TRANSFORMERS_TESTS`, a folder that already holds them), importable as the
package `transformers_tests`. Nothing of it is copied into this repository.

`test_modeling_common.py` imports two mixins from test folders the sdist leaves out, `exporters/test_export.py`
(`ExportTesterMixin`: transformers' exporter toolchain over every model) and `generation/test_utils.py`
(`GenerationTesterMixin`: `generate`, which EAT does not have). They are written here as empty mixins, so their tests
do not run: EAT's ONNX and torch.export graphs are checked by tests/test_export.py instead.
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers


PACKAGE = "transformers_tests"
# The two modules the sdist leaves out, as empty mixins (see the module docstring).
SHIMS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
}


def cache_root() -> Path:
    configured = os.environ.get("MODELING_EAT_TRANSFORMERS_TESTS")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "modeling_eat" / f"transformers-{transformers.__version__}-tests"


def _download_into(root: Path) -> None:
    version = transformers.__version__
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-binary", ":all:",
                   "--no-deps", "-q", "-d", download]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        archives = list(Path(download).glob("transformers-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise RuntimeError(
                f"transformers' common model tests come from its source distribution on PyPI, which could not be "
                f"downloaded ({' '.join(command)}: {result.stderr.strip()[-500:]}). Run the tests with access to "
                "PyPI once, or set MODELING_EAT_TRANSFORMERS_TESTS to a folder holding transformers_tests/ from "
                f"transformers-{version}.tar.gz's tests/."
            )
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        target = staging / PACKAGE
        target.mkdir(parents=True)
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                name = member.name[len(prefix):] if member.name.startswith(prefix) else ""
                if member.isfile() and name.endswith(".py") and "/" not in name:
                    (target / name).write_bytes(archive.extractfile(member).read())
        (target / "__init__.py").touch()
        for relative, text in SHIMS.items():
            path = target / relative
            path.parent.mkdir(exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(text)
        staging.rename(root)


def import_common_tests():
    """`transformers_tests.test_modeling_common`, downloaded once per transformers version (a lock keeps parallel
    pytest workers from downloading twice)."""
    root = cache_root()
    if not (root / PACKAGE / "test_modeling_common.py").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        with open(root.parent / f"{root.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / PACKAGE / "test_modeling_common.py").is_file():
                _download_into(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from transformers_tests import test_modeling_common

    return test_modeling_common
