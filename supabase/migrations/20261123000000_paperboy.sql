-- Paperboy state store. The service writes with the service-role key; nothing here is public.
--
-- It applies to an empty database and on top of the live project, where the old service's
-- `digest_tasks`, `fetch_tasks` and `daily_sources` exist with other columns and keys. Paperboy
-- never touches those: its own tables carry the `paperboy_` prefix (shared/keys.py), so the old
-- service's statements keep working and a rollback finds its tables as it left them. The one table
-- both use is the frontend's `profiles`. Every statement is safe to run twice (docs/CUTOVER.md).

create table if not exists public.paperboy_digest_tasks (
    task_id text primary key,
    status text not null
        check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    message text not null default '',
    stage text not null default 'queued',
    progress double precision not null default 0 check (progress between 0 and 1),
    request jsonb not null default '{}'::jsonb,
    user_id text,
    source_date text,
    attempt integer not null default 0,
    running boolean not null default false,
    failures integer not null default 0,
    interruptions integer not null default 0,
    max_attempts integer not null default 5,
    result text,
    articles jsonb,
    error text,
    error_code text,
    degraded boolean not null default false,
    usage jsonb not null default '{}'::jsonb,
    callback_url text,
    callback_status text not null default 'none'
        check (callback_status in ('none', 'pending', 'delivered', 'failed')),
    callback_attempts integer not null default 0,
    callback_error text,
    delivery_id text,
    cancel_requested boolean not null default false,
    worker_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);
create index if not exists paperboy_digest_tasks_status_created
    on public.paperboy_digest_tasks (status, created_at desc);
create index if not exists paperboy_digest_tasks_created
    on public.paperboy_digest_tasks (created_at desc);
create index if not exists paperboy_digest_tasks_callback
    on public.paperboy_digest_tasks (callback_status) where callback_status = 'pending';
create index if not exists paperboy_digest_tasks_user on public.paperboy_digest_tasks (user_id);

create table if not exists public.paperboy_fetch_tasks (
    task_id text primary key,
    source_date text not null,
    categories jsonb not null default '[]'::jsonb,
    status text not null
        check (status in ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    message text not null default '',
    result jsonb,
    error text,
    error_code text,
    callback_url text,
    callback_status text not null default 'none',
    callback_attempts integer not null default 0,
    callback_error text,
    delivery_id text,
    attempt integer not null default 0,
    running boolean not null default false,
    failures integer not null default 0,
    interruptions integer not null default 0,
    max_attempts integer not null default 5,
    cancel_requested boolean not null default false,
    worker_id text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);

-- Fetch tasks share the digests' lifecycle (shared/lifecycle.py); a table made before they did
-- gains its columns here.
alter table public.paperboy_fetch_tasks
    add column if not exists running boolean not null default false,
    add column if not exists failures integer not null default 0,
    add column if not exists interruptions integer not null default 0,
    add column if not exists max_attempts integer not null default 5,
    add column if not exists cancel_requested boolean not null default false,
    add column if not exists worker_id text;

create table if not exists public.paperboy_daily_sources (
    source_date text not null,
    category text not null,
    items jsonb not null default '[]'::jsonb,
    item_count integer not null default 0,
    fetched_at timestamptz not null default now(),
    primary key (source_date, category)
);

create table if not exists public.paperboy_idempotency_keys (
    key text primary key,
    request_hash text not null,
    task_id text not null,
    created_at timestamptz not null default now()
);

-- One email per (source_date, user_id), or one welcome per user: the key is also the provider's
-- idempotency key. States: pending -> generating -> generated -> sending -> sent | failed |
-- ambiguous; `sent` is final (shared/deliveries.py). Times are ISO-8601 UTC text.
create table if not exists public.paperboy_email_deliveries (
    delivery_key text primary key,
    kind text not null check (kind in ('digest', 'welcome')),
    user_id text not null,
    email text not null,
    source_date text,
    task_id text,
    state text not null default 'pending'
        check (state in ('pending', 'generating', 'generated', 'sending', 'sent', 'failed',
                         'ambiguous')),
    attempts integer not null default 0,
    provider_message_id text,
    error text,
    first_send_at text,
    sent_at text,
    created_at text not null,
    updated_at text not null
);
create index if not exists paperboy_email_deliveries_date
    on public.paperboy_email_deliveries (source_date);
create index if not exists paperboy_email_deliveries_state
    on public.paperboy_email_deliveries (state)
    where state not in ('sent', 'failed');

-- The frontend's subscribers, as the live project has them. On the live project the table exists
-- and this statement does nothing; on an empty database it makes the same shape
-- (gen_random_uuid() is built into PostgreSQL 13 and later).
create table if not exists public.profiles (
    id uuid primary key default gen_random_uuid(),
    user_id uuid not null unique,
    email text,
    name text,
    title text,
    goals text,
    interests text,
    remove timestamptz,
    task_id text,
    task_html text,
    started_at timestamptz,
    completed_at timestamptz,
    created_at timestamptz not null default now()
);
-- The daily run writes back the last digest, as the old service did. The live table has these
-- columns; adding them only where missing leaves the frontend's own columns as they are.
alter table public.profiles
    add column if not exists task_id text,
    add column if not exists task_html text,
    add column if not exists started_at timestamptz,
    add column if not exists completed_at timestamptz;

alter table public.paperboy_digest_tasks enable row level security;
alter table public.paperboy_fetch_tasks enable row level security;
alter table public.paperboy_daily_sources enable row level security;
alter table public.paperboy_idempotency_keys enable row level security;
alter table public.paperboy_email_deliveries enable row level security;
alter table public.profiles enable row level security;
