-- no-transaction
-- built without locking writes: CREATE INDEX CONCURRENTLY cannot run in a transaction
create index concurrently if not exists visits_path on visits (path);
