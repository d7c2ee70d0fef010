"""The benchmark harness's pure parts: the launch table, the scenarios, the
results reader on the files recorded before it, and wrk's output parsed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(autouse=True, scope="module")
def _bench_on_path():
    sys.path.insert(0, str(BENCH))
    yield
    sys.path.remove(str(BENCH))


def test_every_server_listens_on_loopback_only():
    from harness.peers import PEERS, fill

    for name, peer in PEERS.items():
        cmd = fill(peer.cmd, port=1234, workers=2)
        assert "0.0.0.0" not in cmd, name
        assert peer.kind == "main" or "127.0.0.1" in cmd, name  # main targets do not listen
        assert "{" not in cmd, (name, cmd)


def test_every_scenario_names_known_servers_of_its_kind():
    import compare

    from harness.peers import PEERS

    for name, sc in compare.SCENARIOS.items():
        kinds = {PEERS[s].kind for s in sc.servers}
        assert len(kinds) == 1, (name, kinds)
    window = compare.SCENARIOS["asgi-db-check-window"].servers
    assert [PEERS[s].cmd.split("--pool-check-idle ")[1] for s in window] == ["2", "0"]


def test_the_table_of_recorded_runs_keeps_each_files_rounds_apart(tmp_path):
    import json

    import compare

    def rec(label: str, rnd: int, rps: float) -> str:
        fields = {"bench": "compare", "label": label, "scenario": "asgi-db", "round": rnd}
        return json.dumps({"schema": 1, **fields, "run": {"rps": rps}, "summary": {}})

    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    # both files have a round 0: merged by number, the ratios would pair runs of different runs
    one.write_text(rec("pg-supervise-pool", 0, 100.0) + "\n" + rec("uvicorn-std", 0, 100.0) + "\n")
    two.write_text(rec("pg-supervise-pool", 0, 300.0) + "\n" + rec("uvicorn-std", 0, 100.0) + "\n")
    table = compare.table(compare.recorded([str(one), str(two)], ["asgi-db"]))
    row = next(line for line in table.splitlines() if "uvicorn-std" in line)
    assert row.replace("\u2013", "-").replace("\u00d7", "x").endswith("| 2.00x (1.00-3.00) |"), row


def test_recorded_results_are_still_read():
    from harness import results

    recs = list(results.read(sorted(str(p) for p in (BENCH / "results").glob("*.json*"))))
    benches = {r["bench"] for r in recs}
    assert {"throughput", "reload", "supervisor", "db"} <= benches
    # the legacy files read as schema 0; what compare.py records now is schema 1
    assert all("label" in r and r["schema"] in (0, 1) for r in recs)
    assert any(r["schema"] == 0 for r in recs)


def test_wrk_output_is_parsed():
    from harness.load import parse_wrk

    out = """Running 1s test @ http://127.0.0.1:1/
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms    1.00ms  12.30ms   80.00%
  Latency Distribution
     50%    2.40ms
     99%    7.10ms
  24000 requests in 1.00s, 3.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  24000.50
"""
    r = parse_wrk(out)
    assert r["rps"] == 24000.5 and r["requests"] == 24000
    assert r["lat_p50_ms"] == 2.4 and r["lat_p99_ms"] == 7.1 and r["lat_max_ms"] == 12.3
    assert r["non2xx"] == 2 and r["socket_errors"] == 4


# -- bench/memory.py's helpers --------------------------------------------------


def test_msgfmt_compiles_what_gettext_reads():
    import gettext
    import io

    from harness import msgfmt

    po = r"""# a comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n > 1);\n"

msgid "Home"
msgstr "Accueil"

msgctxt "month"
msgid "May"
msgstr "mai"

msgid "Two "
"lines"
msgstr "Deux \"lignes\"\n"

msgid "%(n)d item"
msgid_plural "%(n)d items"
msgstr[0] "%(n)d article"
msgstr[1] "%(n)d articles"

#, fuzzy
msgid "Guess"
msgstr "Devine"

msgid "Untranslated"
msgstr ""
"""
    catalog = msgfmt.parse_po(po)
    assert "Guess" not in catalog and "Untranslated" not in catalog
    t = gettext.GNUTranslations(io.BytesIO(msgfmt.mo_bytes(catalog)))
    assert t.gettext("Home") == "Accueil"
    assert t.pgettext("month", "May") == "mai"
    assert t.gettext("Two lines") == 'Deux "lignes"\n'
    assert t.ngettext("%(n)d item", "%(n)d items", 1) == "%(n)d article"
    assert t.ngettext("%(n)d item", "%(n)d items", 2) == "%(n)d articles"
    assert t.gettext("Guess") == "Guess"
    with pytest.raises(msgfmt.POError):
        msgfmt.parse_po('msgid "a"\nmsgstr b\n')


def test_the_django_apps_catalogs_compile(tmp_path):
    from harness import msgfmt

    written = msgfmt.compile_tree(BENCH / "apps" / "djangoapp" / "locale", tmp_path)
    assert {p.split("/")[-3] for p in written} >= {"fr", "de", "es", "ja"}


def test_tree_roles():
    from harness.memtree import role

    assert role(10, 10, 1, "anything") == "master"
    assert role(11, 10, 10, "supervise: worker 1 app:app") == "worker"
    assert role(12, 10, 10, "supervise: mold gen 1 app:app") == "mold"
    assert role(13, 10, 1, "python -c from multiprocessing.spawn import spawn_main") == "other"
    assert role(13, 10, 1, "python app", served={13}) == "worker"  # reparented, but it answered
    assert role(14, 10, 10, "python -c from multiprocessing.resource_tracker import main") == "other"
    assert role(15, 10, 10, "gunicorn: worker [app]") == "worker"


def test_tree_totals():
    from harness.memtree import totals, workers_of

    def proc(pid, r, pss, uss):
        return {"pid": pid, "role": r, "Pss": pss * 1024, "USS": uss * 1024, "Rss": pss * 2048}

    snap = {"procs": [proc(1, "master", 10, 5), proc(2, "worker", 4, 2), proc(3, "worker", 6, 3)]}
    snap["procs"].append(proc(4, "other", 1, 1))
    tot = totals(snap)
    assert tot["total_pss_mib"] == 21 and tot["total_uss_mib"] == 11 and tot["processes"] == 4
    assert tot["workers"] == 2 and tot["worker_pss_med_mib"] == 5 and tot["molds"] == 0
    assert tot["others"] == 1 and tot["mold_pss_mib"] is None
    assert workers_of(snap) == {2, 3}


def test_refork_windows():
    from harness import reforkload as rl

    assert rl.episodes([5.0, 5.5, 6.0, 20.0], gap=2.0) == [(5.0, 6.0), (20.0, 20.0)]
    assert rl.episodes([]) == []
    w = rl.windows(0.0, 30.0, [(5.0, 6.0)], pad=0.25, skip=1.0)
    assert w["before"] == (1.0, 4.75) and w["during"] == [(4.75, 6.25)] and w["after"] == (6.25, 30.0)
    assert rl.windows(0.0, 30.0, [(0.5, 2.0)], skip=1.0)["before"] is None  # reforked at once
    assert rl.windows(0.0, 30.0, [])["during"] == []
    events = [
        (1.5, True, 200, 9, None),
        (5.0, False, None, None, "HTTPError:eof"),
        (7.0, False, 503, 9, None),
    ]
    c = rl.count(events, (4.75, 6.25))
    assert c["ok"] == 0 and c["failed"] == 1 and c["errors"] == {"HTTPError": 1}
    assert rl.count(events, (6.25, 30.0))["errors"] == {"status 503": 1}
    assert rl.per_second(events, 0.0, 7.5)[1] == [1, 0] and rl.per_second(events, 0.0, 7.5)[7] == [0, 1]


def test_memory_servers_listen_on_loopback_and_turn_reforking_off_explicitly():
    from harness.memservers import MEM_APPS, MEM_SERVERS, command, servers_for
    from harness.peers import fill

    for app, spec in MEM_APPS.items():
        assert spec.kind in MEM_SERVERS[spec.baseline].kinds
        for name, server in MEM_SERVERS.items():
            if spec.kind not in server.kinds:
                continue
            cmd = fill(command(name, app, "1000", True), port=1234, workers=4)
            assert "127.0.0.1:1234" in cmd or "--port 1234" in cmd, cmd
            assert "{" not in cmd and "0.0.0.0" not in cmd, cmd
            if server.refork is False:  # ours defaults to reforking with --preload: off must be said
                assert "--refork-after off" in cmd
                assert "--refork-after" not in command(name, app, "1000", False)
            if server.refork:
                assert "--refork-after 1000" in cmd
        assert spec.baseline in servers_for(app, smoke=True)
    defaults = command("pg-supervise-defaults", "django", "1000", True)
    assert "--preload" in defaults and "--refork-after" not in defaults and "--threads" not in defaults
    assert "--threads 1" in command("pg-supervise", "django", "off", True)
    assert "--threads" not in command("pg-supervise", "fastapi", "off", True)


def test_request_mixes_are_varied_and_seeded():
    import random

    from harness.mixes import MIXES

    for name, mix in MIXES.items():
        rng, again = random.Random(3), random.Random(3)
        a = [mix(rng) for _ in range(500)]
        assert a == [mix(again) for _ in range(500)]
        assert all(p.startswith("/") for p in a)
        assert len(set(a)) > 100, name
    rng = random.Random(1)
    django = [MIXES["django"](rng) for _ in range(2000)]
    for part in ("/admin/login/", "/static/admin/", "/items/", "/db/", "/nope/"):
        assert any(p.startswith(part) for p in django), part


def test_memory_table_ratios_to_the_baseline():
    from harness import memreport

    def rec(label, start, warm, after):
        summary = {
            f"{p}.total_pss_mib": {"n": 1, "median": v, "min": v, "max": v}
            for p, v in (("start", start), ("warm", warm), ("after", after))
        }
        fields = {"test": "tree", "app": "django", "baseline": "gunicorn-preload-sync", "workers": 4}
        return {"label": label, "warmup": 3000, "requests": 50000, "summary": summary, **fields}

    md = memreport.tree(
        [rec("pg-supervise", 60.0, 120.0, 100.0), rec("gunicorn-preload-sync", 50.0, 100.0, 125.0)]
    )
    assert "after 50k" in md and "after warm-up (3k)" in md
    row = next(line for line in md.splitlines() if line.startswith("| pg-supervise |"))
    assert row.replace("\u00d7", "x").endswith("| 1.20x / 1.20x / 0.80x |"), row
