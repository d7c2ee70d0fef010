create table jobs (id bigserial primary key, done boolean not null default false);
