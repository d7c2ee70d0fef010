"""X-Forwarded-For read from a trusted proxy: the nearest untrusted hop is the client."""

from __future__ import annotations


def test_forwarded_for_takes_the_nearest_untrusted_hop():
    from supervisor.http.forwarded import Trusted

    proxies = Trusted(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.contains("10.2.3.4") and not proxies.contains("203.0.113.7")
    # a client cannot spoof its address by sending its own X-Forwarded-For first
    assert proxies.client("1.1.1.1, 203.0.113.7, 10.0.0.5") == "203.0.113.7"
    assert proxies.client("203.0.113.7:5555") == "203.0.113.7"
    assert proxies.client("[2001:db8::1]:443, 10.0.0.5") == "2001:db8::1"
    assert proxies.client("10.0.0.9") == "10.0.0.9"  # all trusted: the first hop
    assert Trusted(["*"]).client("1.1.1.1, 203.0.113.7") == "1.1.1.1"
    assert proxies.client(" , ") == ""
