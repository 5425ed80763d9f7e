"""The package's layers, read from its source: imports go one way only, and every helper name has one home.

- core: the files that ship with every saved folder (+ the package `__init__`); they import only torch, numpy,
  transformers (and huggingface_hub's dataclass validators, as transformers' own configs do) and each other;
- shared: the modules below the workflows (audio, optimizer rules, Hub publishing, figures, how scripts run on the
  machine); they import core and shared modules only;
- workflows: one subpackage each (pre-training, fine-tuning, conversion, inference); a workflow imports core, shared
  modules and itself, never another workflow;
- studies: experiments over the workflows (the SSL study); they may import workflows, never another study;
- entry points: the thin `python -m modeling_eat.<command>` modules, each handing over to one workflow or study;
- harness adapters: the modules an evaluation harness imports by name (HEAR's API, X-ARES's encoder), as thin as the
  entry points and, like them, handing over to one workflow.
"""

import ast
import re
import sys
from pathlib import Path

import pytest

from eat_testing import PROJECT_ROOT


PACKAGE = PROJECT_ROOT / "modeling_eat"
CORE = {
    "__init__", "audio_io_eat", "configuration_eat", "feature_extraction_eat", "loading_eat", "masking_eat",
    "modeling_eat", "pipeline_eat", "windowing_eat",
}
SHARED = {"audio", "hub", "metrics", "optimization", "outputs", "plotting", "runtime", "synthetic_audio"}
WORKFLOWS = {"conversion", "deployment", "finetuning", "inference", "pretraining"}
STUDIES = {"study"}
ENTRY_POINTS = {"convert", "export", "extract", "finetune", "linear_probe", "pretrain", "quickstart", "ssl_study"}
HARNESS_ADAPTERS = {"hear", "xares"}
CORE_THIRD_PARTY = {"torch", "numpy", "transformers", "huggingface_hub"}


def unit_of(path: Path) -> str:
    """The layer unit a file belongs to: its top-level module name, or its workflow subpackage."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def layer_of(unit: str) -> str:
    layers = (("core", CORE), ("shared", SHARED), ("workflow", WORKFLOWS), ("study", STUDIES),
              ("entry point", ENTRY_POINTS), ("harness adapter", HARNESS_ADAPTERS))
    for layer, units in layers:
        if unit in units:
            return layer
    raise AssertionError(f"modeling_eat/{unit} belongs to no layer: add it to the layer sets of tests/test_layout.py")


def imports_of(path: Path, source: str | None = None) -> tuple[set[str], set[str]]:
    """(units of the package, top-level third-party modules) that `path` (or `source` as if it were there) imports,
    anywhere in the file."""
    package_parts = ["modeling_eat", *path.relative_to(PACKAGE).parent.parts]
    units, third_party = set(), set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                # `from . import plotting` names a module, not an attribute of the package.
                names = [f"{module}.{alias.name}" for alias in node.names] if not node.module else [module]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "modeling_eat":
                third_party.add(parts[0])
            elif len(parts) > 1:
                units.add(parts[1])
    return units, third_party


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_of_the_package_has_a_layer():
    for path in package_files():
        layer_of(unit_of(path))


def layer_violations(path: Path, source: str | None = None) -> list[str]:
    unit = unit_of(path)
    layer = layer_of(unit)
    units, third_party = imports_of(path, source)
    imported = {other: layer_of(other) for other in units - {unit}}
    if layer == "core":
        problems = [
            f"core file {path.name} imports {other} ({kind})" for other, kind in imported.items() if kind != "core"
        ]
        outside = third_party - set(sys.stdlib_module_names) - CORE_THIRD_PARTY
        return problems + [f"core file {path.name} imports {module}" for module in sorted(outside)]
    allowed = {"shared": ("core", "shared"), "workflow": ("core", "shared"), "study": ("core", "shared", "workflow")}
    if layer in allowed:
        return [
            f"{layer} {unit} imports {other} ({kind})"
            for other, kind in imported.items()
            if kind not in allowed[layer]
        ]
    targets = [other for other, kind in imported.items() if kind in ("workflow", "study")]
    above = [other for other, kind in imported.items() if kind in ("entry point", "harness adapter")]
    if len(targets) == 1 and not above:
        return []
    return [f"{layer} {unit} should hand over to one workflow or study, imports {imported}"]


@pytest.mark.parametrize("path", package_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_go_one_way(path):
    assert layer_violations(path) == []


@pytest.mark.parametrize(
    "path, source, expected",
    [
        ("finetuning/data.py", "from ..pretraining.data import derived_seed\n", "finetuning imports pretraining"),
        ("inference/cli.py", "def f():\n    from modeling_eat.conversion import x\n", "imports conversion"),
        ("audio.py", "from .finetuning import recipes\n", "shared audio imports finetuning"),
        ("modeling_eat.py", "from .audio import decode_audio\n", "core file modeling_eat.py imports audio"),
        ("masking_eat.py", "import datasets\n", "core file masking_eat.py imports datasets"),
        ("pretraining/data.py", "from ..study import report\n", "workflow pretraining imports study"),
        ("hear.py", "from .inference import x\nfrom .finetuning import y\n", "harness adapter hear should hand over"),
        ("xares.py", "from .inference import x\nfrom . import hear\n", "harness adapter xares should hand over"),
    ],
)
def test_the_layer_check_catches_imports_against_the_direction(path, source, expected):
    problems = layer_violations(PACKAGE / path, source)
    assert any(expected in problem for problem in problems), problems


def test_no_helper_name_is_defined_twice_in_the_package():
    homes = {}
    for path in package_files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                homes.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    assert not {name: files for name, files in homes.items() if len(files) > 1}


def test_readme_layout_table_matches_the_tree():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(modeling_eat/[\w/]*\.py|modeling_eat/\w+/)`", table))
    modules = {f"modeling_eat/{path.relative_to(PACKAGE)}" for path in PACKAGE.glob("*.py")}
    subpackages = {f"modeling_eat/{path.name}/" for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert listed == modules | subpackages


def _levels_above_the_file(node: ast.AST) -> int | None:
    """How many folders above the file's own an expression derived from `__file__` points to (`Path(__file__)` and
    `.with_name(...)`: 0, `.parent`: 1, `.parents[i]`: i + 1, `os.path.dirname`: 1 each); None when `__file__` is not
    at its root or the count is not a literal."""
    if isinstance(node, ast.Name):
        return -1 if node.id == "__file__" else None
    if isinstance(node, ast.Call):
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if name in ("Path", "PurePath", "abspath", "realpath") and node.args:
            inner = _levels_above_the_file(node.args[0])
            return None if inner is None else max(inner, 0)
        if name == "dirname" and node.args:
            inner = _levels_above_the_file(node.args[0])
            return None if inner is None else inner + 1
        if isinstance(function, ast.Attribute) and name in ("resolve", "absolute", "with_name", "with_suffix"):
            return _levels_above_the_file(function.value)
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _levels_above_the_file(node.value)
        return None if inner is None else inner + 1
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
        inner = _levels_above_the_file(node.value.value)
        if inner is None or not isinstance(node.slice, ast.Constant):
            return None
        return inner + node.slice.value + 1
    return None


def paths_outside_the_package(path: Path, source: str | None = None) -> list[str]:
    """Paths `path`'s code builds that leave the package once installed: derived from `__file__` and climbing above
    `modeling_eat/` (a wheel holds nothing there), or literal paths that climb out with `..`."""
    # modeling_eat/hub.py may climb one folder (to modeling_eat/), modeling_eat/study/cli.py two.
    highest = len(path.relative_to(PACKAGE).parts)
    problems = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        levels = _levels_above_the_file(node)
        if levels is not None and levels > highest:
            problems.append(f"{path.name}:{node.lineno} reads {levels - highest} folder(s) above the package")
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            literals = [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            if name in ("Path", "open", "join") and any(part == ".." for text in literals for part in text.split("/")):
                problems.append(f"{path.name}:{node.lineno} opens a path that climbs out with '..'")
    return problems


@pytest.mark.parametrize("path", package_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_package_code_reads_no_path_outside_the_package(path):
    assert paths_outside_the_package(path) == []


@pytest.mark.parametrize(
    "path, source",
    [
        ("hub.py", 'MODEL_CARD = Path(__file__).resolve().parent.parent / "model_card.md"\n'),
        ("study/cli.py", 'SCRIPTS = Path(__file__).resolve().parents[2] / "training"\n'),
        ("audio.py", 'ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))\n'),
        ("inference/cli.py", 'DATA = Path("../shared/data")\n'),
    ],
)
def test_the_path_check_catches_reads_from_outside_the_package(path, source):
    assert paths_outside_the_package(PACKAGE / path, source)


def test_the_path_check_lets_files_beside_the_module_through():
    source = 'LABELS = Path(__file__).with_name("labels.json")\nHERE = Path(__file__).resolve().parents[1]\n'
    assert paths_outside_the_package(PACKAGE / "study" / "cli.py", source) == []
    assert paths_outside_the_package(PACKAGE / "hub.py", source) != []
