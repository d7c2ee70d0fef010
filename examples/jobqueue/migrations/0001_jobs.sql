-- The queue and the proof of work.
--
-- A job is 'queued' until the transaction that does its work also marks it
-- 'done'. job_effects stands for whatever the work changes (an email sent, a
-- row written elsewhere). It deliberately has no unique constraint on job_id:
-- nothing but the claim protocol stops a job from running twice, so counting
-- rows per job proves the protocol exactly once.
create table jobs (
    id bigserial primary key,
    payload text not null,
    status text not null default 'queued' check (status in ('queued', 'done')),
    enqueued_at timestamptz not null default now(),
    done_at timestamptz,
    done_by int
);

-- Consumers look only at queued jobs, oldest first; a partial index keeps that
-- scan small however many done jobs pile up.
create index jobs_queued on jobs (id) where status = 'queued';

create table job_effects (
    job_id bigint not null references jobs (id),
    worker_id int not null,
    result text not null,
    at timestamptz not null default now()
);

create index job_effects_job_id on job_effects (job_id);
