"""Breaches: an endpoint is connected again only after a disconnect that libzmq does not retry."""

from __future__ import annotations

import pytest
import zmq

from services.transport.relink import Breaches, parse_monitor_event

A, B = "tcp://127.0.0.1:5556", "tcp://127.0.0.1:5558"


def _event(kind: int, endpoint: str) -> dict[str, object]:
    return {"event": kind, "value": 0, "endpoint": endpoint.encode()}


def test_a_disconnect_without_a_retry_is_due_after_the_wait():
    breaches = Breaches([A, B], restore_after_s=1.0)

    breaches.take(_event(zmq.EVENT_DISCONNECTED, A), 10.0)

    assert (breaches.next_due_s(), breaches.due(10.5), breaches.due(11.0)) == (11.0, [], [A])
    assert (breaches.next_due_s(), breaches.due(20.0)) == (None, [])


def test_a_retry_after_the_disconnect_cancels_the_reconnection():
    breaches = Breaches([A], restore_after_s=1.0)

    breaches.take(_event(zmq.EVENT_DISCONNECTED, A), 10.0)
    breaches.take(_event(zmq.EVENT_CONNECT_RETRIED, A), 10.1)

    assert (breaches.next_due_s(), breaches.due(12.0)) == (None, [])


def test_events_of_an_endpoint_not_watched_are_ignored():
    breaches = Breaches([A], restore_after_s=1.0)

    breaches.take(_event(zmq.EVENT_DISCONNECTED, B), 10.0)

    assert breaches.due(12.0) == []


def test_monitor_events_parse_as_pyzmq_parses_them():
    from zmq.utils.monitor import parse_monitor_message  # the reference: loads asyncio, here only

    context = zmq.Context()
    server, client = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    try:
        port = server.bind_to_random_port("tcp://127.0.0.1")
        monitor = client.get_monitor_socket(zmq.EVENT_ALL)
        client.connect(f"tcp://127.0.0.1:{port}")
        server.close(linger=0)  # the client sees its connection drop
        seen = []
        while monitor.poll(2000) and len(seen) < 4:
            seen.append(monitor.recv_multipart())
        assert len(seen) >= 2  # at least connect-delayed and connected
        assert [parse_monitor_event(frames) for frames in seen] == [
            parse_monitor_message(frames) for frames in seen
        ]
        with pytest.raises(RuntimeError):
            parse_monitor_event([b"\x00" * 5, b"tcp://x"])
        client.disable_monitor()
        monitor.close(linger=0)
    finally:
        client.close(linger=0)
        context.term()
