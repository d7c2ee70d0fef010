def apply(conn):
    conn.execute("create table if not exists from_callable (id int)")
    conn.execute("insert into from_callable values (1)")
