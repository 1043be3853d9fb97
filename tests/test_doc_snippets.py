"""Every code block a user would paste from README.md and docs/*.md runs as pasted from the repository
root, or says it is a template and carries a part that runs. This test extracts the blocks and runs them.

The conventions the documents follow (checked here):
- Each fence names its language. `sh`/`bash` and `python` blocks are commands and are run; `json`,
  `yaml`, `toml`, `dockerfile` and `text` blocks are outputs, files or diagrams and are not.
- `<!-- snippet: skip, REASON -->` on the line before a fence: the block is not run here and REASON
  says why (training runs, make targets, Docker, GPUs, Ray clusters); `pytest -rs` lists them all.
- A `# template: ...` line inside a block starts lines that name the user's own files; they are not
  run, up to a `# runs as pasted: ...` line, after which the block runs again. Every template that is
  not skipped has such a runnable part.
- The blocks of one document run in order in one temporary folder that looks like the repository
  root (src/, .venv/, ... linked), so files one block writes are there for the next, and a variable a
  block sets (`IMG=...`) is set in the later blocks of the same document, as in one terminal.
- A block that talks to localhost:5004 gets a real `findbox serve` (the demo bundle) on a free port;
  a `findbox serve` command is itself started on a free port, waited for until ready, and stopped.
- A block followed directly by a `json` block (its output, as the README shows it) must print that
  output: the same JSON, numbers within 0.5 (the output was printed on one CPU; another machine's
  kernels, or a precision its own calibration record unlocks, move the logits by up to about 0.3).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
RUN = {"sh", "bash", "python"}
NOT_RUN = {"json", "yaml", "toml", "dockerfile", "text"}
REPO_ENTRIES = ["src", ".venv", "benchmarks", "deploy", "docs", "tests", "pyproject.toml", "Makefile",
                "Dockerfile", "README.md"]
SKIP = re.compile(r"^<!-- snippet: skip, (.+?) -->$")
TEMPLATE, RUNS = re.compile(r"^\s*# template\b"), re.compile(r"^\s*# runs as pasted\b")
SERVER_URL = re.compile(r"(localhost|127\.0\.0\.1):5004")
SERVE = re.compile(r"(^|/)findbox serve\b")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S+$")
TIMEOUT_S = 300


@dataclass
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: str | None  # the reason, from the marker before the fence
    output: str | None  # the json block right after it: what it prints

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"

    def runnable_code(self) -> str:
        """The code without its template parts (`# template` up to `# runs as pasted`)."""
        kept, in_template = [], False
        for line in self.code.splitlines():
            if TEMPLATE.match(line):
                in_template = True
            elif RUNS.match(line):
                in_template = False
            elif not in_template:
                kept.append(line)
        return "\n".join(kept).strip()


def read_blocks(document: str) -> list[Block]:
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        skip = SKIP.match(lines[i - 1]) if i else None
        blocks.append(Block(document, i + 1, fence.group(1), "\n".join(lines[i + 1:end]),
                            skip.group(1) if skip else None, None))
        if len(blocks) > 1 and blocks[-2].language in RUN and blocks[-1].language == "json" \
                and lines[i - 1] == "```":  # an output block right under its command
            blocks[-2].output = blocks[-1].code
        i = end + 1
    return blocks


BLOCKS = [b for doc in DOCUMENTS for b in read_blocks(doc)]


def test_every_block_says_what_it_is():
    """A language on every fence, and a runnable part in every template that runs."""
    unlabelled = [b.name for b in BLOCKS if b.language not in RUN | NOT_RUN]
    assert unlabelled == [], f"fences without a known language ({sorted(RUN | NOT_RUN)}): {unlabelled}"
    no_runnable_part = [b.name for b in BLOCKS if b.language in RUN and not b.skip
                        and any(TEMPLATE.match(line) for line in b.code.splitlines()) and not b.runnable_code()]
    assert no_runnable_part == [], f"templates with no '# runs as pasted' part: {no_runnable_part}"
    assert len([b for b in BLOCKS if b.language in RUN and not b.skip]) >= 10  # the runner found the blocks


# --- running ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    """One folder per document that looks like the repository root: what a block writes stays there."""
    made: dict[str, Path] = {}

    def get(document: str) -> Path:
        if document not in made:
            folder = tmp_path_factory.mktemp(document.replace("/", "_").replace(".md", ""))
            for entry in REPO_ENTRIES:
                if (ROOT / entry).exists():
                    (folder / entry).symlink_to(ROOT / entry)
            made[document] = folder
        return made[document]

    return get


@pytest.fixture(scope="module")
def demo_server():
    """`findbox serve` with no model options (the demo bundle, as `make serve`), started when a block asks."""
    started: list[ServerProcess] = []

    def get() -> ServerProcess:
        if not started:
            started.append(ServerProcess(["--device", "cpu"], timeout=300))
        return started[0]

    yield get
    for server in started:
        server.stop()


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("FINDBOX_TRACEBACK", None)
    return env


def shell_commands(code: str) -> list[str]:
    """The block's commands: lines joined at trailing backslashes, comments and blank lines dropped."""
    commands, current = [], ""
    for line in code.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def run_shell(script: str, cwd: Path, name: str) -> str:
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=environment(),
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"{name} failed ({result.returncode}):\n{script}\n{result.stderr[-3000:]}"
    return result.stdout


def start_and_stop_serve(command: str, cwd: Path, name: str) -> None:
    """Start the block's `findbox serve` on a free port, wait for /health, stop it: it serves as pasted."""
    import httpx

    port = free_port()
    argv = shlex.split(command) + ["--host", "127.0.0.1", "--port", str(port)]
    log = open(cwd / f"serve-{port}.log", "w+")
    proc = subprocess.Popen(argv, cwd=cwd, env=environment(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        log.seek(0)
        pytest.fail(f"{name}: `{command}` did not serve (exit {proc.poll()}):\n{log.read()[-3000:]}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def assert_same_json(printed: str, shown: str, name: str) -> None:
    def close(a, b) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return abs(a - b) <= 0.5
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        return a == b

    got = [json.loads(line) for line in printed.splitlines() if line.strip()]
    want = [json.loads(line) for line in shown.splitlines() if line.strip()]
    assert close(got, want), f"{name} printed\n{printed}\nthe document shows\n{shown}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language in RUN], ids=lambda b: b.name)
def test_block_runs_as_pasted(block, workspaces, demo_server):
    if block.skip:
        pytest.skip(f"{block.name}: {block.skip}")
    cwd = workspaces(block.document)
    code = block.runnable_code()
    if SERVER_URL.search(code):
        code = SERVER_URL.sub(f"127.0.0.1:{demo_server().port}", code)
    if block.language == "python":
        result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment(), capture_output=True,
                                text=True, timeout=TIMEOUT_S)
        assert result.returncode == 0, f"{block.name} failed:\n{result.stderr[-3000:]}"
        printed = result.stdout
    else:
        # variables set by the document's earlier blocks, as in one terminal
        earlier = [line for b in BLOCKS if b.document == block.document and b.line < block.line
                   and b.language in ("sh", "bash") for line in b.runnable_code().splitlines()
                   if ASSIGNMENT.match(line)]
        printed, pending = "", []
        for command in shell_commands(code):
            if SERVE.search(command.split("#")[0]) and "--help" not in command:
                if pending:
                    printed += run_shell("\n".join(earlier + pending), cwd, block.name)
                    pending = []
                start_and_stop_serve(command.split(" #")[0], cwd, block.name)
            else:
                pending.append(command)
        if pending:
            printed += run_shell("\n".join(earlier + pending), cwd, block.name)
    if block.output is not None:
        assert_same_json(printed, block.output, block.name)
