"""The README's commands as a new user types them after set-up: every ``python ...`` and ``bash ...`` line of its
code blocks (and every ``python ...`` in its inline code) names a script or module that exists, passes only flags
that script accepts, and has no placeholder (``<run>``, ``...``, ``{a,b}``) to fill in; the environment they need
is activated once, before the first of them; the cache keys are described as the code computes them."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import runpy
import shlex
import sys
import warnings
from pathlib import Path

import pytest

from common.args import build_parser, resolve_data
from common.domains import domain_of
from common.paths import run_dir
from DM.demo import SYNSETS as DEMO_SYNSETS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
ACTIVATE = "source .venv/bin/activate"


def _split(line: str) -> list[str]:
    """Tokens of a shell line, as bash splits it: a '#' that starts a word outside quotes starts a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            line = line[:i]
            break
    return shlex.split(line)


def commands_of(block: str, first: int = 1) -> list[tuple[int, list[str]]]:
    """(line number, tokens) of every python/bash command of a code block; continued lines joined."""
    found, lines, k = [], block.splitlines(), 0
    while k < len(lines):
        start, line = k, lines[k]
        while line.endswith("\\") and k + 1 < len(lines):  # a continued line
            k += 1
            line = line[:-1] + " " + lines[k]
        k += 1
        tokens = _split(line)
        if tokens and tokens[0] in ("python", "bash"):
            found.append((first + start, tokens))
    return found


def commands() -> list[tuple[int, list[str]]]:
    """(line number in the README, tokens) of every python/bash command, in README order."""
    found = []
    for m in FENCE.finditer(README):
        found += commands_of(m.group(1), README.count("\n", 0, m.start(1)) + 1)
    outside = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), README)
    for m in re.finditer(r"`([^`]+)`", outside):
        if m.group(1).startswith("python "):
            found.append((README.count("\n", 0, m.start()) + 1, _split(m.group(1).replace("\n", " "))))
    return sorted(found)


COMMANDS = commands()


def _exec_args(script: str) -> list[str]:
    """What a ``*/scripts/*.sh`` passes to ``"${LAUNCH[@]}"``: the Python entry, then its flags (environment
    defaults such as ``${DATASET:-CIFAR10}`` filled in, ``"$@"`` left out)."""
    text = (ROOT / script).read_text().replace("\\\n", " ")
    line = next((ln for ln in text.splitlines() if "${LAUNCH[@]}" in ln), None)
    assert line, f"{script}: cannot find the Python entry it launches"
    parts = shlex.split(re.sub(r'"\$\{\w+:-([^}]*)\}"', r"\1", line))
    return [p for p in parts[parts.index("${LAUNCH[@]}") + 1:] if p != "$@"]


def _launched_argv(tokens: list[str]) -> tuple[str, list[str]]:
    """(the Python entry point a command runs, every argument it gets): a script path or '-m module'; a bash
    script's entry is the Python script it execs, with the flags of its exec line before the command's own
    ('' for the scripts that take no flags checked here)."""
    if tokens[0] == "python":
        if tokens[1] == "-m":
            return "-m " + tokens[2], tokens[3:]
        return tokens[1], tokens[2:]
    assert (ROOT / tokens[1]).is_file(), f"bash {tokens[1]}: no such script"
    if tokens[1] in ("run_demo.sh", "test.sh", "setup.sh") or "/benchmarks/" in f"/{tokens[1]}":
        return "", []  # takes no flags that go to a Python parser checked here
    launched = _exec_args(tokens[1])
    return launched[0], launched[1:] + tokens[2:]


_HELP: dict[str, str] = {}


def help_text(entry: str) -> str:
    """What ``python <entry> --help`` prints, run in this process (the entry's parser exits after printing)."""
    if entry not in _HELP:
        out, argv = io.StringIO(), sys.argv[:]
        try:
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e, warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before
                if entry.startswith("-m "):
                    sys.argv = [entry[3:], "--help"]
                    runpy.run_module(entry[3:], run_name="__main__", alter_sys=True)
                else:
                    sys.argv = [entry, "--help"]
                    runpy.run_path(str(ROOT / entry), run_name="__main__")
            assert e.value.code in (0, None), f"{entry} --help exited with {e.value.code}"
        finally:
            sys.argv[:] = argv
        _HELP[entry] = out.getvalue()
    return _HELP[entry]


def test_the_readme_has_commands_to_check():
    entries = {_launched_argv(t)[0] for _, t in COMMANDS}
    assert {"Video/eval.py", "3D_Voxel/eval.py", "-m common.data.moving_fmnist", "Video/main_DM.py",
            "3D_Voxel/main_DC.py", "DC/main_DC.py", "TM/main_TM.py"} <= entries


def test_the_environment_is_activated_once_before_the_first_command():
    """Each per-domain ``python`` line needs the .venv that setup.sh made: the README says to activate it once,
    in a code block before the first of them (``python -m common.data.moving_fmnist`` used to fail with
    ``No module named 'torch'``)."""
    first_python = min(n for n, t in COMMANDS if t[0] == "python")
    blocks = [README.count("\n", 0, m.start(1)) + 1 + k for m in FENCE.finditer(README)
              for k, line in enumerate(m.group(1).splitlines()) if line.strip().startswith(ACTIVATE)]
    assert len(blocks) == 1 and blocks[0] < first_python


@pytest.mark.parametrize("line, tokens", COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_command_runs_as_written(line, tokens):
    """No placeholder, an entry point that exists, and only flags its parser accepts."""
    for t in tokens:
        assert not re.search(r"<[^>]*>|\.\.\.|\{[^}]*,[^}]*\}", t), f"README line {line}: placeholder {t!r}"
    if tokens[0] == "python" and tokens[1] != "-m":
        assert (ROOT / tokens[1]).is_file(), f"README line {line}: no script {tokens[1]}"
    entry, args = _launched_argv(tokens)
    if entry.startswith("-m "):
        assert importlib.util.find_spec(entry[3:]) is not None, f"README line {line}: no module {entry[3:]}"
    flags = {a.split("=")[0] for a in args if a.startswith("--")}
    if not entry or not flags:
        return
    known = set(re.findall(r"--[A-Za-z][\w-]*", help_text(entry)))
    unknown = sorted(flags - known)
    assert not unknown, f"README line {line}: {entry} does not accept {unknown}"


def _last(argv: list[str], flag: str, default=None):
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]
    return values[-1] if values else default


def _run_folder(entry: str, argv: list[str]) -> str:
    """Where a distillation command writes its run (common.paths.run_dir, seed 0, no --exp_name): its flags
    resolved by the real parser and the dataset's domain (common.args.resolve_data)."""
    objective = re.search(r"main_(DM|DC|TM)\.py$", entry).group(1)
    values = vars(build_parser("", objective).parse_args(argv))
    resolve_data(values)
    values["model"] = values["model"] or domain_of(values["dataset"]).default_model
    return run_dir(argparse.Namespace(objective=objective, **values))


def test_checkpoint_paths_are_where_an_earlier_command_of_the_block_writes():
    """``--ckpt runs/...`` names the run folder that a distillation command above it (same code block) creates,
    as common.paths.run_dir computes it (a non-native --res adds _res<N> to the dataset folder)."""
    checked = 0
    for m in FENCE.finditer(README):
        runs = []
        for _, tokens in commands_of(m.group(1)):
            entry, argv = _launched_argv(tokens)
            if re.search(r"main_(DM|DC|TM)\.py$", entry or ""):
                runs.append(_run_folder(entry, argv))
            if tokens[:2] == ["bash", "run_demo.sh"] or "DM.demo" in tokens:  # the demo's runs (its --out default)
                runs += [f"runs/demo/DM/FashionMNIST/{s}" for s in DEMO_SYNSETS]
            ckpt = _last(argv, "--ckpt")
            if ckpt and ckpt.startswith("runs/"):
                assert os.path.dirname(ckpt) in runs, f"{ckpt}: no command above it writes there (they write {runs})"
                checked += 1
    assert checked >= 5


def test_clip_cache_is_keyed_as_the_readme_says(tmp_path):
    """The README says what the code does: the clip cache is keyed by each frame file's path, size and
    modification time (not a digest of its bytes), so touching a frame rebuilds the cache and a frame rewritten
    with the same size and time is not noticed."""
    assert "a digest of\nthe csv and of every frame file" not in README
    video_section = README[README.index("## Video"):README.index("## 3-D voxels")]
    assert "path, size and modification time of every frame file" in " ".join(video_section.split())

    from common.data import get_dataset
    from test_video_data import write_ucf

    write_ucf(tmp_path / "data")
    kw = dict(res=48, frames=4, frame_gap=2, cache_dir=str(tmp_path / "cache"))
    get_dataset("miniUCF101", str(tmp_path / "data"), **kw)
    caches = lambda: sorted(p.name for p in (tmp_path / "cache").rglob("*.npy"))  # noqa: E731
    before = caches()
    frames = sorted((tmp_path / "data" / "UCF101" / "jpegs_112" / "v_Class0_g00_train").iterdir())
    stats = [f.stat() for f in frames]
    data = [f.read_bytes() for f in frames]
    for f, st, d in zip(frames, stats, data):  # other bytes, same size, same time: not noticed
        f.write_bytes(bytes(len(d)))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    get_dataset("miniUCF101", str(tmp_path / "data"), **kw)
    assert caches() == before
    for f, st, d in zip(frames, stats, data):  # touched: decoded again
        f.write_bytes(d)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    get_dataset("miniUCF101", str(tmp_path / "data"), **kw)
    assert len(caches()) == len(before) + 1
