"""fly.toml, the Dockerfile, the Makefile and the README describe the same two processes."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from shared.settings import Settings
from tests.support import API_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
API_COMMAND = "uvicorn paperboy_api.app:app"
WORKER_COMMAND = "python -m paperboy_worker"


def fly() -> dict[str, object]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def test_fly_has_an_app_and_a_worker_process_group() -> None:
    processes = fly()["processes"]

    assert isinstance(processes, dict)
    assert set(processes) == {"app", "worker"}
    assert processes["app"].startswith(API_COMMAND)
    assert processes["worker"] == WORKER_COMMAND


def test_only_the_api_serves_http_and_it_may_scale_to_zero() -> None:
    service = fly()["http_service"]

    assert isinstance(service, dict)
    assert service["processes"] == ["app"]
    assert service["min_machines_running"] == 0
    assert service["auto_stop_machines"] in {"stop", "suspend", True}
    port = service["internal_port"]
    assert f"--port {port}" in fly()["processes"]["app"]  # type: ignore[index]


def test_kill_timeout_outlasts_the_shutdown_grace() -> None:
    config = fly()

    assert config["kill_timeout"] > Settings().worker_shutdown_grace  # type: ignore[operator]
    env = config["env"]
    assert isinstance(env, dict)
    assert config["kill_timeout"] > int(env["WORKER_SHUTDOWN_GRACE"])  # type: ignore[operator]


def test_every_file_names_the_same_commands() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()

    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    assert " ".join(eval(cmd.group(1))).startswith(API_COMMAND)  # noqa: S307 - our own file
    for text in (makefile, readme):
        assert API_COMMAND in text
        assert WORKER_COMMAND in text.replace("$(BIN)/", "")


def test_the_image_installs_the_lock_file_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "pip install -r requirements.lock" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    lock = (ROOT / "requirements.lock").read_text().lower()
    for test_tool in ("pytest", "respx", "fakeredis", "ruff", "mypy"):
        assert f"\n{test_tool}==" not in f"\n{lock}"


def test_every_shipped_api_command_caps_request_heads() -> None:
    """The header limits live in the protocol; a command without it would serve without them."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    option = " ".join(API_OPTIONS)
    commands = {
        "fly.toml": fly()["processes"]["app"],  # type: ignore[index]
        "Dockerfile": " ".join(eval(cmd.group(1))),  # noqa: S307 - our own file
        "Makefile": (ROOT / "Makefile").read_text(),
        "scripts/run_local.py": (ROOT / "scripts" / "run_local.py").read_text(),
    }
    for name, command in commands.items():
        assert option in command or json.dumps(list(API_OPTIONS))[1:-1] in command, name
