"""HTTP/2 trailers end a request as end_of_stream does: a fusion request whose body is
followed by trailers is still a fusion request (it used to skip the filter, and the
alias reached the upstream as model `fusion`). httpx cannot send request trailers; this
speaks HTTP/2 (prior knowledge, h2c) with the `h2` package."""

from __future__ import annotations

import json
import socket

import h2.config
import h2.connection
import h2.events

CHAT = "/v1/chat/completions"


def h2_post_with_trailers(port: int, path: str, body: bytes, timeout: float = 20.0) -> tuple[int, bytes]:
    """POSTs `body` in one DATA frame, then trailers that end the stream; returns (status, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":path", path), (":scheme", "http"),
                            (":authority", "localhost"), ("content-type", "application/json")])
    conn.send_data(sid, body)
    conn.send_headers(sid, [("x-client-trailer", "1")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, out, done = 0, b"", False
    try:
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    out += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == sid:
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return status, out


def test_request_with_trailers_runs_fusion(envoy, mock):
    body = json.dumps({"model": "fusion", "messages": [{"role": "user", "content": "Is tea healthy?"}]})
    status, out = h2_post_with_trailers(envoy.port, CHAT, body.encode())
    assert status == 200, out[:300]
    answer = json.loads(out)
    assert answer["fusion"]["mode"] == "alias"
    assert answer["fusion"]["analysis"] is True
    models = [c["model"] for c in mock.calls()]
    assert "fusion" not in models, models
    assert "mock-judge" in models


def test_plain_request_with_trailers_passes_untouched(envoy, mock):
    body = json.dumps({"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]})
    status, out = h2_post_with_trailers(envoy.port, CHAT, body.encode())
    assert status == 200, out[:300]
    assert "fusion" not in json.loads(out)
    assert [c["model"] for c in mock.calls()] == ["mock-a"]
