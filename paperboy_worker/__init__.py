"""The Paperboy worker: `python -m paperboy_worker` (`arq paperboy_worker.WorkerSettings --check`
for the health check)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Settings are read when arq asks for WorkerSettings (the entry point), not at import.
    if name == "WorkerSettings":
        from paperboy_worker.worker import worker_settings
        from shared.settings import WorkerProcessSettings, load_settings

        return worker_settings(load_settings(WorkerProcessSettings))
    raise AttributeError(name)
