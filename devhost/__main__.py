"""``python -m devhost``: run ``function_app.py`` locally like the Functions host (see README.md).

Order matters and follows Core Tools: app settings first (so the app's import-time code sees them),
then host.json, then indexing; any failure exits non-zero with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from azure.core.exceptions import AzureError

from devhost.easyauth import EasyAuth, load_easyauth
from devhost.host import Host, HostOptions, run
from devhost.indexing import IndexingError, index_app
from devhost.invoke import InvocationLogFilter
from devhost.keys import load_keys
from devhost.ncrontab import CronError
from devhost.queue_listener import ConnectionSettingError
from devhost.routes import RouteError
from devhost.settings import SettingsError, load_host_config, load_local_settings

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The CLI contract other scripts rely on; keep it stable."""
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--app-dir", required=True, type=Path, help="folder holding function_app.py")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port; 0 picks a free one")
    parser.add_argument("--functions", default="", help="comma-separated function names to host (default all)")
    parser.add_argument("--no-http", action="store_true", help="no HTTP server (a worker-only instance)")
    return parser.parse_args(argv)


def configure_logging() -> None:
    """Logs to stderr, each line tagged with the function and invocation that produced it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(InvocationLogFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(function_name)s %(invocation_id)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = os.environ.get("DEVHOST_LOG_LEVEL", "INFO").upper()
    root.setLevel(level)
    # Like the Python worker, the devhost leaves the app's and the SDKs' loggers alone: what an app logs at
    # INFO (the Azure SDK's HTTP logging included) shows here as it would reach Application Insights. The
    # devhost's own storage calls log their HTTP lines at DEBUG (queue_listener), so they add nothing.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    configure_logging()
    app_dir: Path = args.app_dir.resolve()
    only = [n.strip() for n in args.functions.split(",") if n.strip()] or None
    try:
        load_local_settings(app_dir)
        config = load_host_config(app_dir)
        specs = index_app(app_dir, only)
        keys = load_keys(os.environ, functions=None if only else [spec.name for spec in specs])
        easyauth = load_easyauth(os.environ)
        host = Host(
            specs,
            config,
            keys,
            HostOptions(args.host, args.port, not args.no_http),
            easyauth=EasyAuth(easyauth) if easyauth is not None else None,
        )
    except (SettingsError, IndexingError, RouteError, CronError, ConnectionSettingError) as exc:
        print(f"devhost: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    try:
        return asyncio.run(run(host))
    except AzureError as exc:
        # Usually Azurite not running or a wrong connection string: one line says it best.
        print(f"devhost: error: storage unreachable: {exc}", file=sys.stderr, flush=True)
        return EXIT_RUNTIME
    except Exception as exc:
        logging.getLogger("devhost").exception("devhost failed")
        print(f"devhost: error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
