alter table jobs add column if not exists priority int not null default 0;
