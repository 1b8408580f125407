"""Which system a command talks to: the order of --redis-url, --state-dir, REDIS_URL,
BOOKGEN_STATE_DIR and ./.bookgen, and the options before or after the sub-command."""

from __future__ import annotations

from pathlib import Path

import pytest
from bookgen_operator.cli import build_parser
from bookgen_operator.cli.target import DEFAULT_SOURCE, hint, resolve
from bookgen_operator.local.state import write_connection
from bookgen_worker.config import ConfigError


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("here", "other", "env"):
        state = tmp_path / name / ".bookgen"
        state.mkdir(parents=True)
        write_connection(state, f"redis://:pw-{name}@127.0.0.1:6380/0")
        out[name] = state
    return out


def test_the_first_named_system_wins(folders: dict[str, Path]) -> None:
    here = folders["here"].parent
    env = {"BOOKGEN_STATE_DIR": str(folders["env"])}
    shell = {"REDIS_URL": "redis://e:1/0"}
    assert resolve("redis://flag:1/0", folders["other"], shell, here).redis_url == "redis://flag:1/0"
    assert "pw-other@" in str(resolve(None, folders["other"], shell, here).redis_url)
    assert resolve(None, None, {"REDIS_URL": "redis://e:1/0", **env}, here).redis_url is None  # REDIS_URL, as workers
    assert resolve(None, None, {"REDIS_HOST": "h", **env}, here).source == "REDIS_HOST/REDIS_PORT"
    assert "pw-env@" in str(resolve(None, None, env, here).redis_url)
    found = resolve(None, None, {}, here)
    assert "pw-here@" in str(found.redis_url) and found.state_dir == folders["here"].resolve()
    assert resolve(None, None, {}, here.parent).source == DEFAULT_SOURCE  # no ./.bookgen there


def test_a_named_folder_without_a_system_is_an_error_not_the_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(None, tmp_path / "missing", {}, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no connection\.json"):
        resolve(None, None, {"BOOKGEN_STATE_DIR": str(tmp_path / "empty")}, tmp_path)


def test_the_hint_says_when_no_bookgen_up_runs_there(folders: dict[str, Path]) -> None:
    target = resolve(None, folders["here"], {}, None)
    assert "where no `bookgen up` is running" in hint(target)  # nobody holds its lock
    assert "--redis-url" in hint(resolve(None, None, {}, folders["here"].parent.parent))


@pytest.mark.parametrize(("argv", "redis_url", "state_dir"), [
    (["--redis-url", "redis://a", "status"], "redis://a", None),
    (["status", "--redis-url", "redis://b"], "redis://b", None),
    (["--state-dir", "X", "dlq", "list"], None, Path("X")),
    (["dlq", "list", "--state-dir", "W"], None, Path("W")),
    (["--state-dir", "X", "up"], None, Path("X")),
    (["up", "--state-dir", "Y"], None, Path("Y")),
    (["--redis-url", "redis://c", "up"], "redis://c", None),
    (["--state-dir", "V", "env"], None, Path("V")),
])
def test_connection_options_go_before_or_after_the_sub_command(argv: list[str], redis_url: str | None,
                                                               state_dir: Path | None) -> None:
    args = build_parser().parse_args(argv)
    assert (getattr(args, "redis_url", None), getattr(args, "state_dir", None)) == (redis_url, state_dir)
