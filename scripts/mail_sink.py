"""A local SMTP server that keeps every message it receives as files, for `make run`.

Each message becomes `<time>-<id>.eml` (as received) and, when it has an HTML part,
`<time>-<id>.html` next to it, to open in a browser. Standalone:
`python scripts/mail_sink.py --port 8025 --folder var/mail`.
"""

from __future__ import annotations

import argparse
import email.policy
import signal
import uuid
from datetime import UTC, datetime
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class FolderHandler:
    """aiosmtpd handler: write each message into `folder`, accept it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        stem = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{stem}.eml").write_bytes(content)
        message = BytesParser(policy=email.policy.default).parsebytes(content)
        html = message.get_body(("html",))
        if html is not None:
            (self.folder / f"{stem}.html").write_text(html.get_content())
        return "250 Message kept"


def start_sink(folder: Path, port: int, host: str = "127.0.0.1") -> Controller:
    """Start the sink on its own thread; the caller stops it with `.stop()`."""
    controller = Controller(FolderHandler(folder), hostname=host, port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--folder", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    controller = start_sink(args.folder, args.port)
    print(f"SMTP sink on 127.0.0.1:{args.port}, messages in {args.folder}/; Ctrl-C to stop")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
