"""`python -m paperboy_worker`: run the worker until SIGTERM or SIGINT."""

from __future__ import annotations

import logging.config

from arq.logs import default_log_config

from paperboy_worker.poller import PaperboyWorker
from paperboy_worker.worker import worker_settings
from shared.settings import WorkerProcessSettings, load_settings


def main() -> None:
    logging.config.dictConfig(default_log_config(verbose=False))
    settings = load_settings(WorkerProcessSettings)
    PaperboyWorker(
        **worker_settings(settings), idle_poll_seconds=settings.worker_idle_poll_seconds
    ).run()


if __name__ == "__main__":
    main()
