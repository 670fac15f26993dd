"""Command line: ``homeserver run | generate-config | check-config | migrate | register-user |
rotate-signing-key``.

``run`` loads the configuration (writing the documented default on first start when asked to),
sets up logging, and runs :func:`homeserver.app.serve_homeserver` until SIGTERM or SIGINT, then
exits 0 after a graceful stop.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import logging
import signal
import sys
from functools import partial
from pathlib import Path

import trio

from homeserver.config import Config, ConfigError, load_config, sample_config_text
from homeserver.logging_setup import setup_logging

DEFAULT_CONFIG = "homeserver.yaml"


def _generate(path: Path, server_name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sample_config_text(server_name), encoding="utf-8")


#: Allocations between young-generation collections (CPython's default is 700).
_GC_GEN0_THRESHOLD = 10_000


async def _run(cfg: Config) -> None:
    from homeserver.app import serve_homeserver

    stop = trio.Event()

    async def watch_signals() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                logging.getLogger("homeserver").info(
                    "received %s: shutting down", signal.Signals(signum).name
                )
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals)
        bound = await nursery.start(
            lambda task_status: serve_homeserver(
                cfg, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        urls = [u for b in bound for u in b.urls]
        # Everything built at start-up (modules, config, services) lives as long as the
        # process: move it out of the collector's way, so collections only walk what requests
        # allocate, and collect the youngest generation less often (fewer, shorter pauses).
        gc.collect()
        gc.freeze()
        gc.set_threshold(_GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        print(
            f"Homeserver {cfg.server_name} is running on {', '.join(urls)}\n"
            f"  config:   {cfg.config_path}\n"
            f"  database: {cfg.database.url}\n"
            "Create the first account with:\n"
            f"  .venv/bin/homeserver register-user -c {cfg.config_path} --admin <username>\n"
            "Stop with Ctrl+C (SIGINT) or SIGTERM.",
            flush=True,
        )
        await stop.wait()
        nursery.cancel_scope.deadline = trio.current_time() + cfg.limits.shutdown_grace_period_s + 5


def _register_user(cfg: Config, username: str, password: str | None, *, admin: bool) -> int:
    from homeserver.app import register_user
    from homeserver.errors import MatrixError

    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            print("Passwords do not match", file=sys.stderr)
            return 1
    try:
        user_id = trio.run(partial(register_user, cfg, username, password, admin=admin))
    except MatrixError as e:
        print(f"Cannot create {username}: {e.errcode}: {e.msg}", file=sys.stderr)
        return 1
    print(f"Created {user_id}{' (server admin)' if admin else ''}")
    return 0


def _rotate_signing_key(cfg: Config) -> int:
    import time

    from homeserver.keys import old_keys_path, rotate_signing_key

    path = cfg.resolve_path(cfg.signing_key_path)
    try:
        new, previous = rotate_signing_key(path, now_ms=int(time.time() * 1000))
    except (OSError, ValueError) as e:
        print(f"Cannot rotate the signing key: {e}", file=sys.stderr)
        return 1
    print(
        f"New signing key {new.key_id} is active in {path}.\n"
        f"{previous.key_id} is kept as an old key in {old_keys_path(path)}.\n"
        "Restart the server to use the new key."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="homeserver", description="A Matrix homeserver on Trio")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the server in the foreground")
    p_run.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p_run.add_argument(
        "--generate-missing",
        action="store_true",
        help="write the default configuration first if the file does not exist",
    )
    p_run.add_argument("--server-name", default="localhost", help="for --generate-missing")

    p_gen = sub.add_parser("generate-config", help="write the documented default configuration")
    p_gen.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p_gen.add_argument("--server-name", required=True)
    p_gen.add_argument("--force", action="store_true", help="overwrite an existing file")

    p_check = sub.add_parser("check-config", help="check a configuration file and exit")
    p_check.add_argument("-c", "--config", default=DEFAULT_CONFIG)

    p_mig = sub.add_parser("migrate", help="upgrade the database schema to the newest version")
    p_mig.add_argument("-c", "--config", default=DEFAULT_CONFIG)

    p_reg = sub.add_parser("register-user", help="create an account (works under any policy)")
    p_reg.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p_reg.add_argument("--admin", action="store_true", help="make the account a server admin")
    p_reg.add_argument("--password", help="the password (prompted for when left out)")
    p_reg.add_argument("username", help="the localpart (alice) or full user ID (@alice:server)")

    p_rot = sub.add_parser(
        "rotate-signing-key",
        help="make a new signing key active; the old one stays published (restart afterwards)",
    )
    p_rot.add_argument("-c", "--config", default=DEFAULT_CONFIG)

    args = parser.parse_args(argv)
    path = Path(args.config)

    if args.command == "generate-config":
        if path.exists() and not args.force:
            print(f"{path}: exists; use --force to overwrite", file=sys.stderr)
            return 1
        _generate(path, args.server_name)
        print(f"wrote {path}")
        return 0

    if args.command == "run" and args.generate_missing and not path.exists():
        _generate(path, args.server_name)
        print(f"First start: wrote the default configuration to {path.resolve()}", flush=True)

    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(f"Configuration error:\n{e}", file=sys.stderr)
        return 2

    if args.command == "check-config":
        print(f"{path}: OK")
        return 0

    if args.command == "rotate-signing-key":
        return _rotate_signing_key(cfg)

    setup_logging(cfg.logging)
    if args.command == "register-user":
        return _register_user(cfg, args.username, args.password, admin=args.admin)
    if args.command == "migrate":
        from homeserver.storage import migrate

        cfg.resolve_path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        trio.run(migrate, cfg.database_url)
        print("database is at the newest schema")
        return 0

    trio.run(_run, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
