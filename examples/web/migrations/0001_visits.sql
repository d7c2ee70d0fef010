create table visits (
    id bigserial primary key,
    path text not null,
    pid int not null,
    at timestamptz not null default now()
);
