"""Federation benchmark: PDUs per second through the whole inbound pipeline.

Two of our servers run as subprocesses, each with a TLS federation listener on loopback
(certificates from a CA made here with ``trustme``; server names ``127.0.0.1:<port>``).
Server B hosts a public room; server A's user ``@rob`` joins it by a signed transaction, then
the benchmark, speaking *as server A* (A's signing key, read from A's key file), sends
transactions of 50 ``m.room.message`` PDUs each, every PDU following the previous one, to B's
``PUT /_matrix/federation/v1/send/{txnId}``. B fetches A's server key from A over TLS once,
then checks each PDU: format, signature, content hash, auth against its auth events and the
state before it, soft-fail against the current state; and stores it, wakes /sync, and so on.
The transactions go one at a time (the spec's "one transaction in flight per destination").

Reported: PDUs per second (wall clock from the first transaction sent to the last answered)
and B's CPU per PDU. Target (federation issue): ≥ 500 PDUs/s on SQLite.

    .venv/bin/python bench/bench_federation.py                      # 40 transactions x 50
    .venv/bin/python bench/bench_federation.py --transactions 100 --postgres URL
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import V3, Server, register_users, start_server
from federation.core.builder import build_event
from federation.core.events import Event
from federation.core.room_versions import get_room_version
from federation.core.signing import SigningKey, read_signing_keys
from federation.core.xmatrix import sign_request

ROOM_VERSION = "10"
PDUS_PER_TXN = 50


def _federation_overrides(ca: trustme.CA, port: int) -> Any:
    cert = ca.issue_cert("127.0.0.1")

    def prepare(directory: Path) -> dict[str, Any]:
        cert.private_key_pem.write_to_path(str(directory / "tls.key"))
        (directory / "tls.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        return {
            "server_name": f"127.0.0.1:{port}",
            "listeners": [
                {
                    "host": "127.0.0.1",
                    "port": port,
                    "tls_certificate": "tls.crt",
                    "tls_key": "tls.key",
                    "resources": ["federation"],
                }
            ],
            "signing_key_path": "data/signing.key",
            "data_dir": "data",
            "federation": {"custom_ca_file": "ca.pem", "allow_private_destinations": True},
        }

    return prepare


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RemoteSender:
    """Speaks as server A to server B's federation listener."""

    def __init__(self, name: str, key: SigningKey, b_name: str, ca: trustme.CA) -> None:
        self.name, self.key, self.b_name = name, key, b_name
        ctx = __import__("ssl").create_default_context()
        ca.configure_trust(ctx)
        self.http = httpx.AsyncClient(base_url=f"https://{b_name}", verify=ctx, timeout=120)

    async def put_transaction(self, txn_id: str, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        target = f"/_matrix/federation/v1/send/{txn_id}"
        body = {"origin": self.name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus}
        header = sign_request(self.key, "PUT", target, self.name, self.b_name, body)
        r = await self.http.put(target, json=body, headers={"Authorization": header})
        r.raise_for_status()
        answer: dict[str, Any] = r.json()
        return answer


def _event(
    sender: RemoteSender,
    room_id: str,
    user: str,
    event_type: str,
    content: dict[str, Any],
    prevs: list[str],
    auth: list[str],
    depth: int,
    state_key: str | None = None,
) -> Event:
    return build_event(
        get_room_version(ROOM_VERSION),
        room_id=room_id,
        sender=user,
        type=event_type,
        content=content,
        prev_event_ids=prevs,
        auth_event_ids=auth,
        depth=depth,
        origin_server_ts=int(time.time() * 1000),
        origin=sender.name,
        signing_key=sender.key,
        state_key=state_key,
    )


async def inbound(a: Server, b: Server, a_name: str, b_name: str, ca: trustme.CA, n: int) -> None:
    assert a.directory is not None
    key = read_signing_keys((a.directory / "data" / "signing.key").read_text())[0]
    sender = RemoteSender(a_name, key, b_name, ca)
    async with httpx.AsyncClient(base_url=b.base_url, timeout=60) as client:
        [alice] = await register_users(client, "alice", 1)
        r = await client.post(
            f"{V3}/createRoom",
            json={"preset": "public_chat", "room_version": ROOM_VERSION},
            headers=alice.headers,
        )
        r.raise_for_status()
        room_id = r.json()["room_id"]
        state = (await client.get(f"{V3}/rooms/{room_id}/state", headers=alice.headers)).json()
        by_key = {(e["type"], e["state_key"]): e["event_id"] for e in state}
        last = (
            await client.get(
                f"{V3}/rooms/{room_id}/messages",
                params={"dir": "b", "limit": "1"},
                headers=alice.headers,
            )
        ).json()["chunk"][0]["event_id"]
    rob = f"@rob:{a_name}"
    base_auth = [by_key[("m.room.create", "")], by_key[("m.room.power_levels", "")]]
    join = _event(
        sender,
        room_id,
        rob,
        "m.room.member",
        {"membership": "join"},
        [last],
        [*base_auth, by_key[("m.room.join_rules", "")]],
        depth=100,
        state_key=rob,
    )
    answer = await sender.put_transaction("join", [join.pdu])
    assert answer["pdus"] == {join.event_id: {}}, answer
    auth = [*base_auth, join.event_id]
    prev, depth = join.event_id, 101
    batches: list[list[dict[str, Any]]] = []
    for t in range(n):
        pdus = []
        for i in range(PDUS_PER_TXN):
            event = _event(
                sender,
                room_id,
                rob,
                "m.room.message",
                {"msgtype": "m.text", "body": f"message {t}/{i} from A"},
                [prev],
                auth,
                depth,
            )
            pdus.append(event.pdu)
            prev, depth = event.event_id, depth + 1
        batches.append(pdus)
    cpu0, t0 = b.cpu_seconds(), time.perf_counter()
    for t, pdus in enumerate(batches):
        answer = await sender.put_transaction(f"t{t}", pdus)
        errors = {k: v for k, v in answer["pdus"].items() if v}
        assert not errors, errors
    wall, cpu = time.perf_counter() - t0, b.cpu_seconds() - cpu0
    total = n * PDUS_PER_TXN
    print(f"inbound: {total} PDUs in {n} transactions of {PDUS_PER_TXN}")
    print(f"  {total / wall:.0f} PDUs/s (target >= 500), {wall / n * 1000:.0f} ms per transaction")
    print(f"  server B CPU per PDU: {cpu / total * 1000:.2f} ms")
    await sender.http.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=40)
    parser.add_argument("--postgres", help="PostgreSQL URL for server B (default: SQLite)")
    args = parser.parse_args()
    ca = trustme.CA()
    a_port, b_port = _free_port(), _free_port()
    a_name, b_name = f"127.0.0.1:{a_port}", f"127.0.0.1:{b_port}"
    async with (
        start_server(prepare=_federation_overrides(ca, a_port)) as a,
        start_server(args.postgres, prepare=_federation_overrides(ca, b_port)) as b,
    ):
        await inbound(a, b, a_name, b_name, ca, args.transactions)


if __name__ == "__main__":
    trio.run(main)
