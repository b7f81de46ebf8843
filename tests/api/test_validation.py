"""Malformed and hostile requests: each gets a clear 4xx and creates no task."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from paperboy_api.app import create_app
from shared import keys
from shared.settings import ApiSettings
from tests.support import API_KEY, SESSION_SECRET, digest_body

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ApiSettings(
        api_key=API_KEY,
        session_secret=SESSION_SECRET,
        sqlite_path=tmp_path / "api.db",
        # No Redis is reached: nothing here is valid enough to be queued.
        redis_url="redis://127.0.0.1:1/15",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def task_count(tmp_path: Path) -> int:
    """Rows in every table a request can write: tasks, fetches, profiles, idempotency keys."""
    tables = (keys.DIGEST_TASKS, keys.FETCH_TASKS, keys.PROFILES, keys.IDEMPOTENCY_KEYS)
    with sqlite3.connect(tmp_path / "api.db") as conn:
        return sum(
            int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in tables
        )


def with_user(**fields: Any) -> dict[str, Any]:
    user = {"name": "Ada", "goals": "graphs"}
    user.update(fields)
    return digest_body(user_info=user)


MEGABYTE = "x" * 1_000_000

HOSTILE_BODIES: list[tuple[str, Any, str]] = [
    ("missing user_info", {"top_n_articles": 5}, "user_info"),
    ("user_info not an object", {"user_info": "Ada"}, "user_info"),
    ("missing name", {"user_info": {"goals": "graphs"}}, "name"),
    ("blank name", with_user(name="   "), "name"),
    ("name null", with_user(name=None), "name"),
    ("name is a number", with_user(name=42), "name"),
    ("name too long", with_user(name="n" * 201), "name"),
    ("title too long", with_user(title="t" * 201), "title"),
    ("goals too long", with_user(goals="g" * 4001), "goals"),
    ("news_interest too long", with_user(news_interest="i" * 501), "news_interest"),
    ("goals is a list", with_user(goals=["a", "b"]), "goals"),
    ("top_n_articles 0", digest_body(top_n_articles=0), "top_n_articles"),
    ("top_n_articles 500", digest_body(top_n_articles=500), "top_n_articles"),
    ("top_n_articles string", digest_body(top_n_articles="5"), "top_n_articles"),
    ("top_n_articles float", digest_body(top_n_articles=5.5), "top_n_articles"),
    ("top_n_articles bool", digest_body(top_n_articles=True), "top_n_articles"),
    ("top_n_news negative", digest_body(top_n_news=-1), "top_n_news"),
    ("bad date format", digest_body(source_date="22/11/2026"), "source_date"),
    ("impossible date", digest_body(source_date="2026-02-30"), "source_date"),
    ("future date", digest_body(target_date="2999-01-01"), "target_date"),
    ("date is a number", digest_body(source_date=20261122), "source_date"),
    ("javascript callback", digest_body(callback_url="javascript:alert(1)"), "callback_url"),
    ("ftp callback", digest_body(callback_url="ftp://example.com/x"), "callback_url"),
    ("loopback callback", digest_body(callback_url="http://127.0.0.1/hook"), "callback_url"),
    ("short loopback", digest_body(callback_url="http://127.1/hook"), "callback_url"),
    ("decimal loopback", digest_body(callback_url="http://2130706433/hook"), "callback_url"),
    ("hex loopback", digest_body(callback_url="http://0x7f000001/hook"), "callback_url"),
    ("mapped v6 loopback", digest_body(callback_url="http://[::ffff:127.0.0.1]/"), "callback_url"),
    ("private callback", digest_body(callback_url="http://10.0.0.5/hook"), "callback_url"),
    ("metadata callback", digest_body(callback_url="http://169.254.169.254/"), "callback_url"),
    ("localhost callback", digest_body(callback_url="http://localhost:8080/"), "callback_url"),
    (
        "huge callback",
        digest_body(callback_url="https://example.com/" + "a" * 2100),
        "callback_url",
    ),
    (
        "callback with credentials",
        digest_body(callback_url="https://u:p@example.com/"),
        "callback_url",
    ),
    ("no host callback", digest_body(callback_url="https:///path"), "callback_url"),
    ("empty categories", digest_body(categories=[]), "categories"),
    ("too many categories", digest_body(categories=[f"cs.A{i}" for i in range(11)]), "categories"),
    ("bad category", digest_body(categories=["cs.AI; DROP TABLE"]), "categories"),
    ("categories a string", digest_body(categories="cs.AI"), "categories"),
    (
        "both sources off",
        digest_body(digest_sources={"arxiv": False, "news_api": False}),
        "digest_sources",
    ),
    ("sources flag a string", digest_body(digest_sources={"arxiv": "yes"}), "arxiv"),
    ("body is a list", [1, 2, 3], "body"),
]


@pytest.mark.parametrize(
    ("case", "body", "field"), HOSTILE_BODIES, ids=[c[0] for c in HOSTILE_BODIES]
)
def test_hostile_body_is_422_naming_the_field(
    client: TestClient, tmp_path: Path, case: str, body: Any, field: str
) -> None:
    response = client.post("/generate-digest", json=body, headers=HEADERS)

    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])
    assert task_count(tmp_path) == 0


def test_megabyte_string_is_413(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/generate-digest", json=with_user(goals=MEGABYTE), headers=HEADERS)

    assert response.status_code == 413
    assert "64" in response.json()["detail"] or "bytes" in response.json()["detail"]
    assert task_count(tmp_path) == 0


def test_chunked_oversized_body_is_413(client: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"user_info": {"name": "Ada", "goals": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}}'

    headers = {**HEADERS, "Content-Type": "application/json"}
    response = client.post("/generate-digest", content=chunks(), headers=headers)

    assert response.status_code == 413
    assert task_count(tmp_path) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"user_info": {"name": "Ada"}}', "text/plain", 415),
        (b'{"user_info": {"name": "Ada"}}', "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe garbage", "application/json", 400),
    ],
    ids=["bad json", "empty body", "text/plain", "form", "not utf-8"],
)
def test_unreadable_body(
    client: TestClient, tmp_path: Path, content: bytes, content_type: str, status: int
) -> None:
    headers = {**HEADERS, "Content-Type": content_type}
    response = client.post("/generate-digest", content=content, headers=headers)

    assert response.status_code == status
    assert response.json()["detail"]
    assert task_count(tmp_path) == 0


@pytest.mark.parametrize(
    ("key", "status"),
    [("k" * 201, 422), ("caf\u00e9", 422), ("two\nlines", 422)],
    ids=["too long", "not ascii", "control character"],
)
def test_bad_idempotency_key(client: TestClient, tmp_path: Path, key: str, status: int) -> None:
    headers = {**HEADERS, "Idempotency-Key": key}
    try:
        response = client.post("/generate-digest", json=digest_body(), headers=headers)
    except Exception:  # noqa: BLE001 - the HTTP client itself refuses some header values
        return
    assert response.status_code == status
    assert "Idempotency-Key" in json.dumps(response.json())
    assert task_count(tmp_path) == 0


def test_missing_key_is_401(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/generate-digest", json=digest_body())

    assert response.status_code == 401
    assert response.json() == {"detail": "Missing API key: send X-API-Key or Authorization: Bearer"}
    assert task_count(tmp_path) == 0


def test_wrong_key_is_403(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/generate-digest", json=digest_body(), headers={"X-API-Key": "nope"})

    assert response.status_code == 403
    assert task_count(tmp_path) == 0


def test_bearer_token_is_accepted_for_reads(client: TestClient) -> None:
    response = client.get("/digest-status/unknown", headers={"Authorization": f"Bearer {API_KEY}"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


def test_status_of_hostile_task_id_is_404(client: TestClient) -> None:
    response = client.get("/digest-status/" + "a" * 300, headers=HEADERS)

    assert response.status_code == 404


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "healthy"


def test_unknown_fields_are_ignored_but_redis_down_is_503(
    client: TestClient, tmp_path: Path
) -> None:
    """A valid request while Redis is unreachable: 503 with Retry-After, and no task left over."""
    response = client.post("/generate-digest", json=digest_body(extra_field="x"), headers=HEADERS)

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert task_count(tmp_path) == 0


# Every endpoint that takes input, attacked systematically: NULs and lone surrogates in each
# string field, nesting, numbers, types, unicode tricks, sizes, syntax, media types and headers.


@dataclass(frozen=True)
class Hostile:
    case: str
    method: str
    path: str
    status: int
    field: str = ""
    body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def deep(depth: int, leaf: str = "[]") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


def deep_field(depth: int) -> bytes:
    body = json.dumps(digest_body())[:-1]
    return (body + ', "extra": ' + "[" * depth + "]" * depth + "}").encode()


def fetch(**overrides: Any) -> dict[str, Any]:
    return {"source_date": "2026-11-22", **overrides}


def profile(**overrides: Any) -> dict[str, Any]:
    return {
        "user_id": "6f1c2a9e-0b7d-4c3e-9a51-2d8f0e4b7c16",
        "name": "Ada",
        "goals": "graphs",
        **overrides,
    }


NUL = "a\x00b"
SURROGATE = "a\ud800b"
DIGEST, FETCH, PROFILES, RUN = (
    "/generate-digest",
    "/fetch-sources",
    "/admin/profiles",
    ("/admin/orchestration/run"),
)
DIGEST_STRINGS = {
    "name": lambda v: with_user(name=v),
    "title": lambda v: with_user(title=v),
    "goals": lambda v: with_user(goals=v),
    "news_interest": lambda v: with_user(news_interest=v),
    "categories": lambda v: digest_body(categories=["cs.AI", v]),
    "callback_url": lambda v: digest_body(callback_url=f"https://example.com/{v}"),
    "source_date": lambda v: digest_body(source_date=v),
    "target_date": lambda v: digest_body(target_date=v),
    "ignored_extra": lambda v: digest_body(ignored_extra=v),
}
FETCH_STRINGS = {
    "source_date": lambda v: fetch(source_date=v),
    "callback_url": lambda v: fetch(callback_url=f"https://example.com/{v}"),
    "categories": lambda v: fetch(categories=[v]),
}
PROFILE_STRINGS = {
    field_name: (lambda v, f=field_name: profile(**{f: v}))
    for field_name in ("user_id", "email", "name", "title", "goals", "interests")
}

HOSTILE: list[Hostile] = [
    *(
        Hostile(f"{what} in digest {name}", "POST", DIGEST, 422, name, make(text))
        for what, text in (("NUL", NUL), ("surrogate", SURROGATE))
        for name, make in DIGEST_STRINGS.items()
    ),
    *(
        Hostile(f"{what} in fetch {name}", "POST", FETCH, 422, name, make(text))
        for what, text in (("NUL", NUL), ("surrogate", SURROGATE))
        for name, make in FETCH_STRINGS.items()
    ),
    *(
        Hostile(f"NUL in profile {name}", "POST", PROFILES, 422, name, make(NUL))
        for name, make in PROFILE_STRINGS.items()
    ),
    Hostile("NUL in run source_date", "POST", RUN, 422, "source_date", {"source_date": NUL}),
    Hostile("NUL in a key", "POST", DIGEST, 422, "user_info", {"user_info": {"na\x00me": "A"}}),
    Hostile("NUL in a lone string body", "POST", DIGEST, 422, "body", content=b'"\\u0000"'),
    # nesting
    Hostile("30000-deep arrays", "POST", DIGEST, 400, "nested", content=deep(30_000)),
    Hostile("10000-deep objects", "POST", DIGEST, 400, "nested", content=b'{"a":' * 10_000),
    Hostile("33-deep arrays", "POST", DIGEST, 400, "nested", content=deep(33)),
    Hostile("deep in an ignored field", "POST", DIGEST, 400, "nested", content=deep_field(5000)),
    Hostile("deep fetch body", "POST", FETCH, 400, "nested", content=deep(30_000)),
    Hostile("deep profile body", "POST", PROFILES, 400, "nested", content=deep(30_000)),
    Hostile("deep run body", "POST", RUN, 400, "nested", content=deep(30_000)),
    # numbers
    Hostile(
        "400-digit count",
        "POST",
        DIGEST,
        422,
        "top_n_articles",
        content=json.dumps(digest_body())[:-1].encode()
        + b', "top_n_articles": 1'
        + b"0" * 400
        + b"}",
    ),
    Hostile(
        "count 1e400",
        "POST",
        DIGEST,
        422,
        "top_n_news",
        content=json.dumps(digest_body())[:-1].encode() + b', "top_n_news": 1e400}',
    ),
    Hostile(
        "count NaN",
        "POST",
        DIGEST,
        422,
        "top_n_news",
        content=json.dumps(digest_body())[:-1].encode() + b', "top_n_news": NaN}',
    ),
    Hostile(
        "count -Infinity",
        "POST",
        DIGEST,
        422,
        "top_n_articles",
        content=json.dumps(digest_body())[:-1].encode() + b', "top_n_articles": -Infinity}',
    ),
    Hostile(
        "count 2**64", "POST", DIGEST, 422, "top_n_articles", digest_body(top_n_articles=2**64)
    ),
    Hostile("count 3.0", "POST", DIGEST, 422, "top_n_articles", digest_body(top_n_articles=3.0)),
    # types
    Hostile("user_info a list", "POST", DIGEST, 422, "user_info", {"user_info": ["Ada"]}),
    Hostile("user_info null", "POST", DIGEST, 422, "user_info", {"user_info": None}),
    Hostile("name an object", "POST", DIGEST, 422, "name", with_user(name={"first": "A"})),
    Hostile(
        "categories of numbers", "POST", DIGEST, 422, "categories", digest_body(categories=[1])
    ),
    Hostile("callback a number", "POST", DIGEST, 422, "callback_url", digest_body(callback_url=7)),
    Hostile(
        "sources a string",
        "POST",
        DIGEST,
        422,
        "digest_sources",
        digest_body(digest_sources="arxiv"),
    ),
    Hostile("date a bool", "POST", DIGEST, 422, "target_date", digest_body(target_date=True)),
    Hostile("fetch without date", "POST", FETCH, 422, "source_date", {}),
    Hostile("fetch date a list", "POST", FETCH, 422, "source_date", fetch(source_date=["x"])),
    Hostile(
        "fetch future date", "POST", FETCH, 422, "source_date", fetch(source_date="2999-01-01")
    ),
    Hostile("profile without goals", "POST", PROFILES, 422, "goals", {"user_id": "u", "name": "A"}),
    Hostile(
        "profile user_id with a slash", "POST", PROFILES, 422, "user_id", profile(user_id="../etc")
    ),
    Hostile("run date a number", "POST", RUN, 422, "source_date", {"source_date": 20261122}),
    # unicode tricks
    Hostile(
        "fullwidth category",
        "POST",
        DIGEST,
        422,
        "categories",
        digest_body(categories=["\uff43\uff53.AI"]),
    ),
    Hostile(
        "right-to-left override category",
        "POST",
        DIGEST,
        422,
        "categories",
        digest_body(categories=["cs.AI\u202e"]),
    ),
    Hostile(
        "zero-width space category",
        "POST",
        DIGEST,
        422,
        "categories",
        digest_body(categories=["cs.\u200bAI"]),
    ),
    Hostile("non-breaking-space name", "POST", DIGEST, 422, "name", with_user(name="\u00a0\u3000")),
    Hostile(
        "unicode digits in date",
        "POST",
        DIGEST,
        422,
        "source_date",
        digest_body(source_date="\u0662\u0660\u0662\u0666-11-22"),
    ),
    Hostile(
        "fullwidth digits in count",
        "POST",
        DIGEST,
        422,
        "top_n_articles",
        digest_body(top_n_articles="\uff15"),
    ),
    Hostile("overlong UTF-8", "POST", DIGEST, 400, "JSON", content=b'{"user_info": "\xc0\xaf"}'),
    Hostile(
        "Latin-1 body",
        "POST",
        DIGEST,
        400,
        "JSON",
        content=json.dumps(with_user(name="Ad\u00e9"), ensure_ascii=False).encode("latin-1"),
    ),
    # sizes
    Hostile(
        "category too long",
        "POST",
        DIGEST,
        422,
        "categories",
        digest_body(categories=["cs." + "A" * 100]),
    ),
    Hostile(
        "fetch callback too long",
        "POST",
        FETCH,
        422,
        "callback_url",
        fetch(callback_url="https://example.com/" + "a" * 2100),
    ),
    Hostile("profile goals too long", "POST", PROFILES, 422, "goals", profile(goals="g" * 4001)),
    Hostile(
        "body one byte over",
        "POST",
        DIGEST,
        413,
        "bytes",
        content=b'{"pad": "' + b"x" * (64 * 1024 - 10) + b'"}',
    ),
    Hostile("fetch body too large", "POST", FETCH, 413, "bytes", content=b" " * (64 * 1024 + 1)),
    # syntax
    Hostile("trailing comma", "POST", DIGEST, 400, "JSON", content=b'{"user_info": {},}'),
    Hostile("single quotes", "POST", DIGEST, 400, "JSON", content=b"{'user_info': {}}"),
    Hostile("truncated", "POST", DIGEST, 400, "JSON", content=b'{"user_info": {"name": "A'),
    Hostile("two documents", "POST", DIGEST, 400, "JSON", content=b"{}{}"),
    Hostile("comment", "POST", DIGEST, 400, "JSON", content=b'{"a": 1 /* hi */}'),
    Hostile("unterminated deep", "POST", DIGEST, 400, "JSON", content=b"[" * 20),
    Hostile("top-level string", "POST", DIGEST, 422, "body", content=b'"hello"'),
    Hostile("top-level null", "POST", DIGEST, 422, "body", content=b"null"),
    Hostile("top-level number", "POST", FETCH, 422, "body", content=b"42"),
    Hostile("fetch not JSON", "POST", FETCH, 400, "JSON", content=b"source_date=2026-11-22"),
    Hostile("profile not JSON", "POST", PROFILES, 400, "JSON", content=b"<xml/>"),
    # media types
    Hostile(
        "no content type",
        "POST",
        DIGEST,
        415,
        "Content-Type",
        content=json.dumps(digest_body()).encode(),
        headers={"Content-Type": ""},
    ),
    Hostile(
        "multipart",
        "POST",
        DIGEST,
        415,
        "Content-Type",
        content=b"--x--",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    ),
    Hostile(
        "json look-alike type",
        "POST",
        DIGEST,
        415,
        "Content-Type",
        content=json.dumps(digest_body()).encode(),
        headers={"Content-Type": "application/jsonx"},
    ),
    Hostile(
        "fetch as text",
        "POST",
        FETCH,
        415,
        "Content-Type",
        content=b"{}",
        headers={"Content-Type": "text/plain"},
    ),
    Hostile(
        "profile as form",
        "POST",
        PROFILES,
        415,
        "Content-Type",
        content=b"user_id=u",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    # headers and paths
    *(
        Hostile(
            f"Idempotency-Key {name}",
            "POST",
            DIGEST,
            422,
            "Idempotency-Key",
            digest_body(),
            headers={"Idempotency-Key": key},
        )
        for name, key in (
            ("empty", ""),
            ("NUL", "a\x00b"),
            ("leading space", " key"),
            ("trailing space", "key "),
            ("tab", "a\tb"),
            ("DEL", "a\x7fb"),
            ("201 characters", "k" * 201),
        )
    ),
    Hostile("status id with NUL", "GET", "/digest-status/a%00b", 404, "not found"),
    Hostile("status id with a slash", "GET", "/digest-status/..%2F..%2Fetc", 404, "not found"),
    Hostile("digest html id too long", "GET", "/digests/" + "a" * 129, 404, "not found"),
    Hostile("fetch status id with NUL", "GET", "/fetch-status/a%00b", 404, "not found"),
    Hostile(
        "daily status NUL date",
        "GET",
        "/admin/orchestration/status/2026-11-2%00",
        422,
        "source_date",
    ),
    Hostile("task list bad status", "GET", "/admin/tasks?status=zombie", 422, "status"),
    Hostile("task list limit 0", "GET", "/admin/tasks?limit=0", 422, "limit"),
    Hostile("task list huge limit", "GET", "/admin/tasks?limit=" + "9" * 400, 422, "limit"),
    Hostile("task list cursor of NULs", "GET", "/admin/tasks?cursor=AAAA", 422, "cursor"),
    Hostile("task list cursor not base64", "GET", "/admin/tasks?cursor=%%%", 422, "cursor"),
]


def test_the_hostile_table_is_large_and_distinct() -> None:
    cases = [c.case for c in HOSTILE] + [c[0] for c in HOSTILE_BODIES]
    assert len(set(cases)) == len(cases) >= 100


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.case for h in HOSTILE])
def test_hostile_request_is_4xx_naming_the_problem_and_creates_nothing(
    client: TestClient, tmp_path: Path, hostile: Hostile
) -> None:
    headers = {**HEADERS, **hostile.headers}
    content = hostile.content
    if hostile.method == "POST":
        headers.setdefault("Content-Type", "application/json")
        # json.dumps escapes what UTF-8 cannot carry (a lone surrogate goes as \\ud800).
        content = json.dumps(hostile.body).encode() if content is None else content
    headers = {name: value for name, value in headers.items() if name != "Content-Type" or value}
    response = client.request(hostile.method, hostile.path, content=content, headers=headers)

    assert response.status_code == hostile.status, response.text
    assert hostile.field.lower() in json.dumps(response.json()["detail"]).lower()
    assert task_count(tmp_path) == 0
