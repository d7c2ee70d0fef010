"""How a response reaches the socket: the head held for its first body bytes
(pure logic, against a transport that records its writes)."""

from __future__ import annotations

import asyncio
from typing import Any

from supervisor.http.protocol import _JOIN_MAX, _HeldHead


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.events: list[str] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def get_write_buffer_size(self) -> int:
        self.events.append("size")
        return 0


def held() -> tuple[_HeldHead, Recorder]:
    transport = Recorder()
    return _HeldHead(transport, asyncio.get_running_loop()), transport  # type: ignore[arg-type]


def run(body: Any) -> None:
    asyncio.run(body())


def test_a_small_response_is_one_write():
    async def body() -> None:
        writer, transport = held()
        writer.write(b"HEAD\r\n\r\n")
        assert transport.writes == []
        writer.write(b"body")
        writer.write(b"more")
        assert transport.writes == [b"HEAD\r\n\r\nbody", b"more"]
        await asyncio.sleep(0)
        assert transport.writes == [b"HEAD\r\n\r\nbody", b"more"]  # the pending flush finds nothing

    run(body)


def test_a_head_without_body_goes_out_on_the_next_turn_of_the_loop():
    async def body() -> None:
        writer, transport = held()
        writer.write(b"HEAD")
        await asyncio.sleep(0)
        assert transport.writes == [b"HEAD"]
        writer.write(b"later")
        assert transport.writes == [b"HEAD", b"later"]

    run(body)


def test_a_large_body_is_not_copied_behind_its_head():
    async def body() -> None:
        writer, transport = held()
        big = b"x" * (_JOIN_MAX + 1)
        writer.write(b"HEAD")
        writer.write(big)
        assert transport.writes == [b"HEAD", big]
        assert transport.writes[1] is big

    run(body)


def test_close_and_other_calls_send_the_head_first():
    async def body() -> None:
        writer, transport = held()
        writer.write(b"HEAD")
        assert writer.get_write_buffer_size() == 0
        assert transport.events == ["write", "size"]
        writer, transport = held()
        writer.write(b"HEAD")
        writer.close()
        assert transport.events == ["write", "close"]

    run(body)


def test_a_head_is_dropped_when_the_connection_is_closing():
    async def body() -> None:
        writer, transport = held()
        writer.write(b"HEAD")
        transport.closing = True
        await asyncio.sleep(0)
        assert transport.writes == []

    run(body)
