"""The project's shape, checked on the source: where code may import from, and how big it may get.

Walks the syntax tree of every production module (``anycompany``, ``chat``, ``orders``) and
fails on:

- an import cycle between modules (imports inside functions count: a lazy import that hides a
  cycle is still one);
- ``from x import _private`` of another project module, or ``module._private`` on one;
- a package importing one above it: ``chat.engine`` ← the log ids and tracer
  (``anycompany.logcontext``, ``anycompany.telemetry``), the database pool
  (``anycompany.dbpool``) and the cache's counters (``anycompany.counters``) ← ``orders`` ←
  ``chat.tools`` (and the models) ← ``chat.live`` ← ``chat.staff`` ← ``chat.evals`` ← the
  app's entry points and the project;
- a ``chat.engine`` module importing Django, Channels or asyncio, or boto3/botocore outside
  ``chat.engine.bedrock``;
- a module over 400 lines (migrations excepted).

Run it alone with ``.venv/bin/pytest tests/test_architecture.py``. The last tests build a small
tree that breaks each rule, to show the checks catch what they claim to.
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Rules:
    packages: tuple[str, ...]
    # Lower layers first; a module may import its own layer and those before it. A module's
    # layer is the one of its longest matching prefix.
    layers: tuple[tuple[str, ...], ...]
    engine: str
    engine_forbidden: tuple[str, ...] = ("django", "channels", "asyncio", "daphne")
    sdk: tuple[str, ...] = ("boto3", "botocore")
    sdk_modules: tuple[str, ...] = ()
    max_lines: int = 400


PROJECT = Rules(
    packages=("anycompany", "chat", "orders"),
    layers=(
        ("chat.engine",),
        # Log ids, the tracer, the database pool and the cache's counters: every layer that runs
        # Django code logs, traces, queries and counts with them.
        (
            "anycompany.logcontext",
            "anycompany.telemetry",
            "anycompany.dbpool",
            "anycompany.counters",
        ),
        ("orders",),
        ("chat.models", "chat.migrations", "chat.tools"),
        ("chat.live",),
        ("chat.staff",),
        # Evals play turns through the live chat and price them like the staff dashboard; no
        # part of the running app depends on them.
        ("chat.evals",),
        ("chat", "anycompany"),
    ),
    engine="chat.engine",
    sdk_modules=("chat.engine.bedrock",),
)


@dataclass(frozen=True)
class Import:
    target: str  # the project module imported, or the external module's dotted name
    names: tuple[str, ...]  # the names taken with ``from … import``
    line: int


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    # A package's own module is its __init__: "." is the package itself.
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                yield Import(target if target in known else alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, is_package, node)
            plain = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    yield Import(submodule, (), node.lineno)
                else:
                    plain.append(alias.name)
            if plain:
                yield Import(source, tuple(plain), node.lineno)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_attributes(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """``module._private`` where ``module`` names a project module imported under that name."""
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in known:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, path.name == "__init__.py", node)
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            yield f"{aliases[node.value.id]}.{node.attr}", node.lineno


def _layer(module: str, rules: Rules) -> int | None:
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(rules.layers)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for following in sorted(graph.get(node, ())):
            if following not in index:
                visit(following)
                low[node] = min(low[node], low[following])
            elif following in on_stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(root: Path, rules: Rules) -> list[str]:
    """Every way the modules under ``root`` break ``rules``, one line each."""
    known = modules(root, rules.packages)
    graph: dict[str, set[str]] = {name: set() for name in known}
    found: list[str] = []
    for name, path in known.items():
        where = f"{path.relative_to(root)}"
        lines = len(path.read_text().splitlines())
        if lines > rules.max_lines and ".migrations." not in f".{name}.":
            found.append(f"{where}: {lines} lines (at most {rules.max_lines})")
        in_engine = name == rules.engine or name.startswith(rules.engine + ".")
        for item in imports(name, path, known):
            at = f"{where}:{item.line}"
            top = item.target.split(".")[0]
            if item.target in known:
                if item.target != name:
                    graph[name].add(item.target)
                private = [n for n in item.names if _private(n)]
                if private and item.target != name:
                    found.append(f"{at}: imports private {', '.join(private)} from {item.target}")
                mine, theirs = _layer(name, rules), _layer(item.target, rules)
                if mine is not None and theirs is not None and theirs > mine:
                    found.append(f"{at}: {name} imports {item.target}, a layer above it")
            elif in_engine and top in rules.engine_forbidden:
                found.append(f"{at}: the engine imports {item.target}")
            elif in_engine and top in rules.sdk and name not in rules.sdk_modules:
                found.append(f"{at}: {item.target} outside {', '.join(rules.sdk_modules)}")
        for attribute, line in _private_attributes(name, path, known):
            found.append(f"{where}:{line}: uses private {attribute}")
    for cycle in _cycles(graph):
        found.append(f"import cycle: {' -> '.join(cycle)}")
    return found


# --- The project ----------------------------------------------------------------------------------


def test_the_project_keeps_its_shape() -> None:
    assert problems(ROOT, PROJECT) == []


def test_each_package_says_what_belongs_in_it() -> None:
    names = modules(ROOT, PROJECT.packages)
    packages = [
        "anycompany",
        "chat",
        "chat.engine",
        "chat.engine.demo",
        "chat.tools",
        "chat.live",
        "chat.staff",
        "chat.evals",
        "orders",
    ]

    undocumented = [p for p in packages if not ast.get_docstring(ast.parse(names[p].read_text()))]

    assert undocumented == []


def test_the_evals_reach_the_rest_of_the_chat_only_through_their_engine_module() -> None:
    known = modules(ROOT, PROJECT.packages)
    rest = ("chat.engine", "chat.tools", "chat.live", "chat.staff")

    elsewhere = [
        f"{name}:{item.line} imports {item.target}"
        for name, path in known.items()
        if name.startswith("chat.evals.") and name != "chat.evals.engine"
        for item in imports(name, path, known)
        if item.target.startswith(rest)
    ]

    assert elsewhere == []


# --- The checks catch what they claim to ----------------------------------------------------------

SYNTHETIC = Rules(
    packages=("app",),
    layers=(("app.engine",), ("app.live",)),
    engine="app.engine",
    sdk_modules=("app.engine.sdk",),
    max_lines=20,
)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/engine/__init__.py": "",
            "app/engine/core.py": "import json\nfrom app.engine import sdk\n",
            "app/engine/sdk.py": "import boto3\nfrom botocore.config import Config\n",
            "app/live/__init__.py": "from app.live import views\n",
            "app/live/views.py": "from app.engine.core import json\n\nimport app.engine.sdk\n",
            "app/migrations/0001_initial.py": "x = 1\n" * 50,
        },
    )

    assert problems(tmp_path, SYNTHETIC) == []


def test_each_broken_rule_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/engine/__init__.py": "",
            "app/engine/core.py": (
                "import django.conf\nimport asyncio\nfrom botocore.config import Config\n"
                "from app.live.views import page\n"
            ),
            "app/engine/sdk.py": "import boto3\n",
            "app/live/__init__.py": "",
            "app/live/views.py": (
                "def page():\n    from app.live.util import _helper\n    return _helper()\n"
            ),
            "app/live/util.py": (
                "from . import views as pages\n\n\ndef _helper():\n    return pages._cache\n"
                + "# filler\n" * 20
            ),
        },
    )

    found = "\n".join(problems(tmp_path, SYNTHETIC))

    assert "app/engine/core.py:1: the engine imports django.conf" in found
    assert "app/engine/core.py:2: the engine imports asyncio" in found
    assert "app/engine/core.py:3: botocore.config outside app.engine.sdk" in found
    assert "app/engine/core.py:4: app.engine.core imports app.live.views, a layer above it" in found
    assert "app/live/views.py:2: imports private _helper from app.live.util" in found
    assert "app/live/util.py:5: uses private app.live.views._cache" in found
    assert "app/live/util.py: 25 lines (at most 20)" in found
    assert "import cycle: app.live.util -> app.live.views" in found
