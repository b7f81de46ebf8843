"""fly.toml, the Dockerfile, the Makefile and the README describe the same two processes."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from shared.settings import ApiSettings, Settings, WorkerProcessSettings
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


# Settings: fly.toml, the README's configuration table and docs/CUTOVER.md name the same ones

SECRETS = {
    "api_key": "k" * 16,
    "session_secret": "s" * 32,
    "supabase_url": "https://project.supabase.co",
    "supabase_key": "service-role",
    "openai_api_key": "sk-test",
    "resend_api_key": "re_test",
}


def fly_env() -> dict[str, str]:
    env = fly()["env"]
    assert isinstance(env, dict)
    return {name.lower(): str(value) for name, value in env.items()}


def configuration_table() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]


def test_fly_sets_only_settings_and_with_its_secrets_both_processes_start() -> None:
    env = fly_env()

    assert set(env) <= set(ApiSettings.model_fields)
    api = ApiSettings(**env, **SECRETS)
    assert api.email_provider == "resend" and api.resend_from_address
    # The scheduler may be switched on (docs/CUTOVER.md step 6) with fly.toml's email settings.
    worker = WorkerProcessSettings(**env, **SECRETS, orchestration_enabled=True)
    assert worker.orchestration_enabled


def test_the_readme_table_names_every_setting_and_fly_and_cutover_name_the_email_ones() -> None:
    table = configuration_table()
    cutover = (ROOT / "docs" / "CUTOVER.md").read_text()

    for name in ApiSettings.model_fields:
        assert f"`{name.upper()}`" in table, name
    assert "`SUPABASE_SERVICE_ROLE_KEY`" in table and "`SUPABASE_SERVICE_ROLE_KEY`" in cutover
    for name in ("email_provider", "resend_from_address", "welcome_from_address"):
        assert name in fly_env()
        assert re.search(f"`{name.upper()}[`=]", cutover), name
    assert "`RESEND_API_KEY`" in cutover and "RESEND_API_KEY=" in (ROOT / "README.md").read_text()
    assert "resend_api_key" not in fly_env()  # a secret, never in the file


def test_the_documented_email_defaults_are_the_settings_defaults() -> None:
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in configuration_table().splitlines()
        if line.startswith("| `")
    }
    defaults = Settings.model_fields

    assert rows["`EMAIL_PROVIDER`"] == f"`{defaults['email_provider'].default}`"
    assert rows["`EMAIL_TIMEOUT_SECONDS`"] == f"{defaults['email_timeout_seconds'].default:g}"
    schedule = ",".join(f"{step:g}" for step in defaults["email_backoff_seconds"].default)
    tries = defaults["email_max_tries"].default
    assert rows["`EMAIL_BACKOFF_SECONDS`, `EMAIL_MAX_TRIES`"] == f"`[{schedule}]`, {tries}"
