-- no-transaction
-- build the index without blocking writes to jobs
alter table jobs add column if not exists state text;
create index concurrently if not exists jobs_state on jobs (state);
