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
