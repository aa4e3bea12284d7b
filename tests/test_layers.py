"""imgcli's layers point one way, modules stay sized to one job, commands live in one home.

The layers (``imgcli/__init__.py`` says why): ``imgcli.lambdas`` (0) ← ``imgcli.infra``
(1) ← the services (2) ← ``imgcli.commands`` (3) ← ``imgcli.cli`` (4). Every runtime import
is read from the source with ``ast``, function-level ones included; imports under ``if
TYPE_CHECKING:`` only feed annotations, so they may point anywhere. A module may import its
own layer or lower ones, never a higher one, and no chain of imports may lead back to where
it started (a cycle), whatever the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgcli.cli import build_app

ROOT = Path(__file__).resolve().parents[1]
#: Source folders and the package each is imported as.
PACKAGES: Mapping[str, str] = {
    "lambdas": "imgcli.lambdas",
    "infra": "imgcli.infra",
    "imgcli": "imgcli",
}
MAX_LINES = 600
LAYER_NAMES = ("imgcli.lambdas", "imgcli.infra", "services", "imgcli.commands", "imgcli.cli")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    names: tuple[str, ...] = ()


def layer(module: str) -> int:
    for number, prefix in ((0, "imgcli.lambdas"), (1, "imgcli.infra"), (3, "imgcli.commands")):
        if module == prefix or module.startswith(prefix + "."):
            return number
    if module in ("imgcli.cli", "imgcli.__main__"):
        return 4
    return 2


def module_files(root: Path = ROOT, packages: Mapping[str, str] = PACKAGES) -> dict[str, Path]:
    """Every module of ours by its import name, read from the real folders (not symlinks)."""
    found: dict[str, Path] = {}
    for folder, package in packages.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(base)
            if (base / relative.parts[0]).is_symlink():
                continue  # imgcli/lambdas and imgcli/infra: read from their own folders
            parts = [package, *relative.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def runtime_imports(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """The imports of ours that ``module`` runs, wherever in the file they are."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.module, node.level)
            if not _ours(base):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    yield Import(module, submodule, node.lineno)
                else:
                    yield Import(module, base, node.lineno, (alias.name,))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (child for branch in node.orelse for child in _walk(branch))
            continue
        yield node
        yield from _runtime_nodes(node)


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    yield from _runtime_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join([*anchor, *([name] if name else [])])


def _ours(name: str) -> bool:
    return name == "imgcli" or name.startswith("imgcli.")


def all_imports(root: Path = ROOT, packages: Mapping[str, str] = PACKAGES) -> list[Import]:
    files = module_files(root, packages)
    known = set(files)
    return [
        found for module, path in files.items() for found in runtime_imports(module, path, known)
    ]


def upward_imports(imports: list[Import]) -> list[str]:
    return [
        f"{found.importer} (layer {LAYER_NAMES[layer(found.importer)]}) imports "
        f"{found.imported} (layer {LAYER_NAMES[layer(found.imported)]}), line {found.line}"
        for found in imports
        if layer(found.imported) > layer(found.importer)
    ]


def import_cycles(imports: list[Import]) -> list[str]:
    """Each cycle once, as the chain of modules that closes it."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        if found.imported != found.importer:
            graph.setdefault(found.importer, set()).add(found.imported)
    cycles: list[str] = []
    seen_members: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                chain = [*path[path.index(target) :], target]
                members = frozenset(chain)
                if members not in seen_members:
                    seen_members.add(members)
                    cycles.append(" -> ".join(chain))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


# The rules, on the repository


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(all_imports()) == []


def test_no_modules_import_each_other() -> None:
    assert import_cycles(all_imports()) == []


def absolute_imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute import in the file, runtime or not: (line, module name)."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def test_the_functions_import_their_siblings_relatively() -> None:
    # In the deployed zip the package is `lambdas`, in the wheel `imgcli.lambdas`: only a
    # relative import finds a sibling in both.
    absolute = [
        f"{module}:{line} imports {name}"
        for module, path in module_files().items()
        if layer(module) == 0
        for line, name in absolute_imports(path)
        if name.split(".")[0] in ("imgcli", *PACKAGES)
    ]
    assert absolute == []


def test_nothing_imports_the_source_folders_by_their_own_names() -> None:
    # `lambdas` and `infra` import in a checkout (its root is on sys.path) but not from the
    # wheel, and a second copy of a module would hold second copies of its classes.
    paths = [*module_files().values(), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    by_folder_name = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in paths
        for line, name in absolute_imports(path)
        if name.split(".")[0] in ("lambdas", "infra")
    ]
    assert by_folder_name == []


def test_the_only_symlinks_in_the_package_are_its_two_source_folders() -> None:
    links = {
        str(path.relative_to(ROOT)): path.readlink().as_posix()
        for path in (ROOT / "imgcli").rglob("*")
        if path.is_symlink()
    }
    assert links == {"imgcli/lambdas": "../lambdas", "imgcli/infra": "../infra"}


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{found.importer}:{found.line} imports {name} from {found.imported}"
        for found in all_imports()
        for name in found.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_no_module_is_over_600_lines() -> None:
    # The tests and benchmarks are code people read too: the same limit holds for them.
    paths = [*module_files().values(), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text("utf-8").splitlines()) for path in paths
    }
    assert len(sizes) > 150
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_every_command_lives_in_imgcli_commands() -> None:
    app = build_app()
    callbacks = [command.callback for command in app.registered_commands]
    for group in app.registered_groups:
        assert group.typer_instance is not None
        callbacks += [command.callback for command in group.typer_instance.registered_commands]
    homes = {callback.__module__ for callback in callbacks if callback is not None}
    assert len(callbacks) >= 12
    assert all(home.startswith("imgcli.commands.") for home in homes), homes


# The checker itself: it finds what it is for


def write_package(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def old_layout(tmp_path: Path) -> Path:
    """The shape issue 10 found: commands importing the CLI module that imports them, a
    service importing the CLI, and infra importing imgcli's settings and errors."""
    write_package(
        tmp_path,
        {
            "imgcli/__init__.py": "",
            "imgcli/cli.py": "def build():\n    from imgcli.commands import register_all\n",
            "imgcli/errors.py": "",
            "imgcli/config.py": "from imgcli.infra.state import StackState\n",
            "imgcli/gallery_api.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from imgcli.cli import Invocation\n"
            ),
            "imgcli/upload.py": "from imgcli.cli import Invocation\n",
            "imgcli/commands/__init__.py": (
                "def register_all():\n    from imgcli.commands import gallery\n"
            ),
            "imgcli/commands/gallery.py": (
                "from imgcli.cli import Invocation, _command_invocation\n"
            ),
            "infra/__init__.py": "",
            "infra/state.py": "from imgcli.errors import ImgcliError\n",
            "infra/deploy.py": "from imgcli.config import StackSettings\nfrom . import state\n",
            "lambdas/__init__.py": "",
            "lambdas/retrieve.py": "from . import cursor\n",
            "lambdas/cursor.py": "",
            # Shapes the checker must read right: an else beside TYPE_CHECKING runs, so do
            # imports in try blocks, aliased imports and imports from a parent package.
            "imgcli/localcloud/__init__.py": "",
            "imgcli/localcloud/server.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    pass\nelse:\n    from imgcli.commands import gallery\n"
                "try:\n    import imgcli.cli as app\nexcept ImportError:\n    pass\n"
                "from .. import errors\n"
            ),
        },
    )
    return tmp_path


def test_the_checker_finds_the_cycles_and_upward_imports_of_the_old_layout(
    old_layout: Path,
) -> None:
    imports = all_imports(old_layout)
    assert Import("imgcli.lambdas.retrieve", "imgcli.lambdas.cursor", 1) in imports
    upward = upward_imports(imports)
    assert len(upward) == 7, upward
    expected = (
        "imgcli.commands.gallery (layer imgcli.commands) imports imgcli.cli",
        "imgcli.upload (layer services) imports imgcli.cli",
        "imgcli.infra.deploy (layer imgcli.infra) imports imgcli.config",
        "imgcli.infra.state (layer imgcli.infra) imports imgcli.errors",
        "imgcli.localcloud.server (layer services) imports imgcli.commands.gallery",
        "imgcli.localcloud.server (layer services) imports imgcli.cli",
    )
    for start in expected:
        assert any(line.startswith(start) for line in upward), start
    assert not any("gallery_api" in line for line in upward)  # annotation-only import
    assert Import("imgcli.localcloud.server", "imgcli.errors", 10) in imports
    assert import_cycles(imports) == [
        "imgcli.cli -> imgcli.commands -> imgcli.commands.gallery -> imgcli.cli"
    ]
    private = [name for found in imports for name in found.names if name.startswith("_")]
    assert private == ["_command_invocation"]
