"""The README's guides, run as a new user would run them (issue 16): every code block,
in order, in a fresh project, from a working directory outside the checkout, with a
scrubbed environment. Shell blocks share one environment (an ``export`` carries on, as
in a terminal); a Python block whose first line names a file (``# name.py: …``) is saved
as that file and run. Blocks marked ``not run by the tests`` start servers that keep
running; other tests cover those (``make lab``, ``make mlflow-ui``, ``botlib up``)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from botlib.transport import free_port
from tests.e2e.conftest import BIN, user_env
from tests.e2e.test_own_data import FRAMEWORK_NOISE

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = "<!-- not run by the tests"
#: what a skipped block may hold: servers that keep running
SERVERS = re.compile(r"^(make (lab|mlflow-ui|demo)|botlib (up|ps|status|down))\b")

pytestmark = pytest.mark.slow


@dataclass
class Block:
    lang: str
    code: str
    skipped: bool
    line: int


def guide_blocks(text: str) -> list[Block]:
    """The fenced blocks between ``## Guides`` and the next top-level section."""
    start = text.index("\n## Guides")
    end = text.index("\n## ", start + 1)
    guides = text[start:end]
    first_line = text[:start].count("\n") + 1
    blocks = []
    for match in re.finditer(r"(?ms)^```(\w*)\n(.*?)^```$", guides):
        before = guides[: match.start()].rstrip().splitlines()
        skipped = bool(before) and before[-1].startswith(SKIP)
        line = first_line + guides[: match.start()].count("\n")
        blocks.append(Block(match.group(1), match.group(2), skipped, line))
    return blocks


def test_every_guide_block_is_run_or_marked_as_a_server() -> None:
    blocks = guide_blocks(README.read_text())
    assert len(blocks) >= 10
    for block in blocks:
        assert block.lang in ("bash", "python"), f"README line {block.line}: ```{block.lang}"
        if block.skipped:
            commands = [c.split("#")[0].strip() for c in block.code.splitlines()]
            assert all(SERVERS.match(c) for c in commands if c), (block.line, block.code)


@pytest.mark.timeout(1200)  # a pipeline of nine notebooks and a dozen commands
def test_the_guides_run_start_to_finish(tmp_path: Path) -> None:
    home, cwd, user_home = tmp_path / "project", tmp_path / "work", tmp_path / "user"
    for folder in (home, cwd, user_home):
        folder.mkdir()
    env = user_env(home, user_home, f"redis://127.0.0.1:{free_port()}/0")
    outputs: list[tuple[int, str]] = []
    try:
        for block in guide_blocks(README.read_text()):
            if block.skipped:
                continue
            out = _run(block, cwd, env, tmp_path / "env")
            outputs.append((block.line, out))
    finally:
        subprocess.run([str(BIN / "botlib"), "redis", "stop"], cwd=cwd, env=env,
                       capture_output=True, timeout=60, check=False)  # fmt: skip

    # a quiet console all along: the pipeline's kernels and the trainings trained Keras
    # networks, and the frameworks said nothing
    noise = [(line, x) for line, out in outputs for x in out.splitlines()
             if FRAMEWORK_NOISE.search(x)]  # fmt: skip
    assert not noise, noise
    assert "[1/9] lstm (train_nn.ipynb)" in "".join(out for _, out in outputs)
    # the pipeline on imported data: a registered model per family, for that market
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    names = {m.name for m in client.search_registered_models()}
    for family in ("lstm", "gru", "transformer", "dqn", "ppo", "ga_rules", "de_rules",
                   "ensemble", "custom-momentum"):  # fmt: skip
        assert any(family in n and "eth_usdt-1h" in n for n in names), (family, names)
    assert not any("btc_usdt" in n for n in names)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.data_symbol = 'ETH/USDT'"
    )
    assert runs and {r.data.tags.get("data_source_name") for r in runs} == {"local"}
    # the plugin's model was promoted to Redis (guide 4) and backed up (guide 5)
    assert list((cwd / "backups").glob("*.tar*"))


def _run(block: Block, cwd: Path, env: dict[str, str], env_file: Path) -> str:
    """Run one block; shell blocks pass their exported variables on through ``env``."""
    if block.lang == "python":
        named = re.match(r"# ([\w.]+\.py):", block.code)
        script = cwd / (named.group(1) if named else "_block.py")
        script.write_text(block.code)
        command = [str(BIN / "python"), script.name]
    else:
        script = cwd / "_block.sh"
        script.write_text("set -euo pipefail\n" + block.code + f"\nenv -0 > {env_file}\n")
        command = ["bash", script.name]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"README line {block.line} failed:\n{block.code}\n---\n{out[-4000:]}"
    )
    if block.lang == "bash":
        carried = dict(
            item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item
        )
        env.clear()
        env.update({k: v for k, v in carried.items() if k not in ("PWD", "OLDPWD", "SHLVL", "_")})
    return out
