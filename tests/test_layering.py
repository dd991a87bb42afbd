"""Generic code does not branch on domains or datasets: it asks the run's domain (common/domains/).

A "domain line" is a line of code (not a docstring or comment) of the generic modules -- common/ outside
common/data/, common/domains/ and networks.py, and the entry folders DC/, DM/, TM/ (demos excepted) -- that names
a domain ("image", "video", ...), a dataset, a network, or a domain's own loader option (--frames, --solid, ...),
or calls is_video / is_voxel. ``python tests/test_layering.py`` (inside the project's environment) lists them.
"""
from __future__ import annotations

import ast
from pathlib import Path

from common.data import DATASETS
from common.domains import DOMAINS
from common.networks import list_networks

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 5  # issue 18's target
GENERIC = [*(ROOT / "common").glob("*.py"), *(ROOT / "common" / "synsets").glob("*.py"),
           *(ROOT / "DC").glob("*.py"), *(ROOT / "DM").glob("*.py"), *(ROOT / "TM").glob("*.py")]
# networks.py holds the networks; a demo shows one dataset by design
EXEMPT = {ROOT / "common" / "networks.py", *ROOT.glob("*/demo.py")}
# the domain modules' own names, their options and the network names are the vocabulary generic code must not use
NAMES = {*DOMAINS, *DATASETS, *list_networks()}
OPTIONS = {opt.name for d in DOMAINS.values() for opt in (*d.options, *d.eval_options)}
CALLS = {"is_video", "is_voxel", "is_image"}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def domain_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, reason) of every domain line of one file."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstring_nodes(tree)
    hits: dict[int, str] = {}
    for node in ast.walk(tree):
        why = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value in NAMES:
                why = f"names {node.value!r}"
            elif node.value.lstrip("-") in OPTIONS:
                why = f"names the option {node.value!r}"
        elif isinstance(node, ast.Attribute) and node.attr in OPTIONS:
            why = f"reads the option .{node.attr}"
        elif isinstance(node, ast.Name) and node.id in CALLS:
            why = f"calls {node.id}"
        if why:
            hits.setdefault(node.lineno, why)
    return sorted(hits.items())


def all_domain_lines() -> list[str]:
    lines = []
    for path in sorted(set(GENERIC) - EXEMPT):
        text = path.read_text().splitlines()
        for n, why in domain_lines(path):
            lines.append(f"{path.relative_to(ROOT)}:{n}: {why}: {text[n - 1].strip()}")
    return lines


def test_generic_code_names_at_most_five_domain_things():
    lines = all_domain_lines()
    assert len(lines) <= LIMIT, "\n".join(lines)


def test_the_checker_sees_a_branch(tmp_path):
    """The checker itself: a file that branches on a domain is caught, its docstring is not."""
    f = tmp_path / "x.py"
    f.write_text('"""Mentions "video" and FashionMNIST in a docstring."""\n'
                 'def f(args, real):\n'
                 '    """video."""\n'
                 '    if real.domain == "video":\n'
                 '        return args.frames\n'
                 '    return is_video(args.dataset) or args.dataset == "FashionMNIST"\n')
    assert [n for n, _ in domain_lines(f)] == [4, 5, 6]


if __name__ == "__main__":
    found = all_domain_lines()
    print("\n".join(found) or "none")
    print(f"{len(found)} domain line(s) (limit {LIMIT})")
