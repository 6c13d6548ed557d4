"""A TLS client on Python's ssl module: connects, completes the handshake, closes.

python3 tls_client.py HOST PORT SERVER_NAME [--alpn h2,http/1.1] [--max-version 1.2]
"""

from __future__ import annotations

import argparse
import socket
import ssl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("server_name")
    parser.add_argument("--alpn", default="")
    parser.add_argument("--max-version", choices=("1.2", "1.3"), default="1.3")
    args = parser.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if args.max_version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    with (
        socket.create_connection((args.host, args.port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=args.server_name or None) as tls,
    ):
        print(tls.version(), tls.selected_alpn_protocol())


if __name__ == "__main__":
    main()
