"""A QUIC server and client on aioquic, for tests that capture a real QUIC handshake.

python3 quic_peer.py server HOST PORT CERT KEY
python3 quic_peer.py client HOST PORT SERVER_NAME ALPN[,ALPN]
"""

from __future__ import annotations

import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration


async def run_server(host: str, port: int, cert: str, key: str) -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3", "hq-interop"])
    config.load_cert_chain(cert, key)
    await serve(host, port, configuration=config)
    await asyncio.Event().wait()


async def run_client(host: str, port: int, server_name: str, alpn: str) -> None:
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=alpn.split(","),
        server_name=server_name,
        verify_mode=ssl.CERT_NONE,
    )
    async with connect(host, port, configuration=config) as client:
        await client.ping()


def main() -> None:
    role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "server":
        asyncio.run(run_server(host, port, sys.argv[4], sys.argv[5]))
    else:
        asyncio.run(asyncio.wait_for(run_client(host, port, sys.argv[4], sys.argv[5]), 10))


if __name__ == "__main__":
    main()
