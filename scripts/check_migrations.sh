#!/usr/bin/env bash
# Apply every supabase/migrations/*.sql, in order, to a throwaway database on a plain PostgreSQL,
# then smoke-test the result. Exits non-zero on any SQL error; the database is dropped on exit.
#
#   PGHOST (127.0.0.1) PGPORT (5432) PGUSER (postgres, else the current user) pick the server;
#   MIGRATIONS_DIR (supabase/migrations) picks the files.
set -euo pipefail

cd "$(dirname "$0")/.."

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGTZ="${PGTZ:-UTC}"
if [[ -z "${PGUSER:-}" ]]; then
    if psql -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        PGUSER=postgres
    else
        PGUSER="$(id -un)"
    fi
fi
export PGUSER

db="paperboy_migrations_$(date +%s)_$$_${RANDOM}"
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

createdb "$db"
trap 'dropdb --if-exists "$db"' EXIT

shopt -s nullglob
dir="${MIGRATIONS_DIR:-supabase/migrations}"
migrations=("$dir"/*.sql)
if ((${#migrations[@]} == 0)); then
    echo "no migrations in $dir" >&2
    exit 1
fi
for migration in "${migrations[@]}"; do # the glob sorts by name, so by timestamp
    echo "applying ${migration}"
    psql_db -1 -f "$migration"
done

echo "smoke test"
psql_db <<'SQL'
insert into public.paperboy_digest_tasks (task_id, status, request)
values ('smoke-1', 'pending', '{"user_id": "u1"}');
select task_id, status, attempt, running, request->>'user_id' as user_id
from public.paperboy_digest_tasks where task_id = 'smoke-1';
SQL

duplicate="insert into public.paperboy_digest_tasks (task_id, status) values ('smoke-1', 'pending')"
if error="$(psql_db -c "$duplicate" 2>&1)"; then
    echo "a second insert of the same task_id succeeded: paperboy_digest_tasks has no primary key" >&2
    exit 1
elif [[ "$error" != *"duplicate key value violates unique constraint"* ]]; then
    echo "the second insert failed, but not on the key: $error" >&2
    exit 1
fi
echo "duplicate key rejected"
echo "migrations OK on ${db}"
