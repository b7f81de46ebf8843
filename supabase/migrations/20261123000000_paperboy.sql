-- Paperboy state store. The service writes with the service-role key; nothing here is public.

create table if not exists public.digest_tasks (
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
create index if not exists digest_tasks_status_created on public.digest_tasks (status, created_at desc);
create index if not exists digest_tasks_created on public.digest_tasks (created_at desc);
create index if not exists digest_tasks_callback on public.digest_tasks (callback_status)
    where callback_status = 'pending';
create index if not exists digest_tasks_user on public.digest_tasks (user_id);

create table if not exists public.fetch_tasks (
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
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz
);

create table if not exists public.daily_sources (
    source_date text not null,
    category text not null,
    items jsonb not null default '[]'::jsonb,
    item_count integer not null default 0,
    fetched_at timestamptz not null default now(),
    primary key (source_date, category)
);

-- Owned by the application; Paperboy reads it for the daily run and offers admin upserts.
create table if not exists public.profiles (
    user_id text primary key,
    email text,
    name text not null,
    title text,
    goals text,
    interests text,
    removed boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table if not exists public.idempotency_keys (
    key text primary key,
    request_hash text not null,
    task_id text not null,
    created_at timestamptz not null default now()
);

alter table public.digest_tasks enable row level security;
alter table public.fetch_tasks enable row level security;
alter table public.daily_sources enable row level security;
alter table public.profiles enable row level security;
alter table public.idempotency_keys enable row level security;
