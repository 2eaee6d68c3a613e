"""``python -m emulator``: run the Graph emulator until SIGINT/SIGTERM.

Prints exactly one line to stdout, ``EMULATOR_READY http://HOST:PORT``, once it listens (scripts and test
fixtures wait for it); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import web

from emulator.app import create_app
from emulator.config import DEFAULT_RATE_LIMIT, DEFAULT_TOKEN_LIFETIME_SECONDS, EmulatorConfig
from emulator.ratelimit import RateLimit, RateScope
from emulator.tenant import DEFAULT_TENANT_PATH

log = logging.getLogger("emulator")


def _rate_limit(text: str) -> str:
    try:
        RateLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The CLI contract other components rely on (see emulator/README.md)."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tenant", type=Path, default=DEFAULT_TENANT_PATH, help="tenant JSON file")
    parser.add_argument(
        "--identity-header", default=None, help="X-IDENTITY-HEADER secret (env EMULATOR_IDENTITY_HEADER wins)"
    )
    parser.add_argument("--rate-limit", type=_rate_limit, default=DEFAULT_RATE_LIMIT, help="e.g. 5/10s, 2/200ms")
    parser.add_argument("--rate-scope", choices=[s.value for s in RateScope], default=RateScope.TENANT.value)
    parser.add_argument("--token-lifetime", type=int, default=DEFAULT_TOKEN_LIFETIME_SECONDS, metavar="SECONDS")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every Graph and token call")
    return parser.parse_args(argv)


def _identity_header(args: argparse.Namespace) -> str:
    from_env = os.environ.get("EMULATOR_IDENTITY_HEADER")
    if from_env:
        return from_env
    if args.identity_header:
        return str(args.identity_header)
    secret = secrets.token_urlsafe(24)
    print(f"emulator: identity header (X-IDENTITY-HEADER / IDENTITY_HEADER): {secret}", file=sys.stderr)
    return secret


async def serve(args: argparse.Namespace) -> None:
    """Listen, announce readiness, and wait for a stop signal."""
    config = EmulatorConfig(
        tenant_path=args.tenant,
        identity_header=_identity_header(args),
        rate_limit=args.rate_limit,
        rate_scope=args.rate_scope,
        token_lifetime_seconds=args.token_lifetime,
        latency_ms=args.latency_ms,
    )
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    display_host = f"[{host}]" if ":" in str(host) else host
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"EMULATOR_READY http://{display_host}:{port}", flush=True)
    log.info(
        "listening on http://%s:%s (tenant %s, rate limit %s, scope %s)",
        display_host,
        port,
        args.tenant,
        args.rate_limit,
        args.rate_scope,
    )
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
