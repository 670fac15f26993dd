"""The composition root.

Builds every store, service and API object by hand (constructor injection, no globals), owns
the nursery that every background task runs in, and serves HTTP with hypercorn's Trio worker.

Lifecycle (:func:`serve_homeserver`):

1. migrate the database to head (a lock stops two processes from both migrating);
2. open the database, load or create the signing key, build stores → services → APIs;
3. start one hypercorn server per listener, report the bound addresses through ``task_status``;
4. wait for the shutdown trigger (SIGTERM/SIGINT in ``__main__``, an event in tests);
5. stop accepting connections and give in-flight requests ``limits.shutdown_grace_period_s``;
6. cancel background tasks, close the database, return.

Nothing is acknowledged to a client before its transaction has committed, so stopping at any
point of this sequence loses nothing that was acknowledged.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from federation.core.signing import SigningKey
from homeserver.api._http import ObservedApp, build_asgi_app
from homeserver.api.client.versions import VersionsApi
from homeserver.api.metrics import HttpMetrics
from homeserver.api.ops import HealthApi, MetricsApi
from homeserver.clock import SystemClock
from homeserver.config import Config, ListenerConfig
from homeserver.keys import load_or_create_signing_key
from homeserver.services.health import HealthService
from homeserver.services.ratelimit import RateLimiter
from homeserver.storage import Database, migrate, open_stores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bound:
    """Where one listener ended up listening (port 0 in the config picks a free port)."""

    listener: ListenerConfig
    urls: list[str]


async def _with_timeout(check: Callable[[], Awaitable[None]], seconds: float = 2.0) -> bool:
    with trio.move_on_after(seconds):
        await check()
        return True
    return False


def _apis_for(resources: tuple[str, ...], apis: dict[str, list[object]]) -> list[object]:
    out: list[object] = []
    for r in resources:
        out.extend(apis.get(r, []))
    return out


def _hypercorn_config(cfg: Config, listener: ListenerConfig) -> HypercornConfig:
    hc = HypercornConfig()
    host = listener.host
    hc.bind = [f"[{host}]:{listener.port}" if ":" in host else f"{host}:{listener.port}"]
    hc.graceful_timeout = cfg.limits.shutdown_grace_period_s
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 75
    hc.include_server_header = False
    if listener.tls_certificate and listener.tls_key:
        hc.certfile = str(cfg.resolve_path(listener.tls_certificate))
        hc.keyfile = str(cfg.resolve_path(listener.tls_key))
        hc.ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20"
        _ = ssl  # TLS settings come from hypercorn's defaults (TLS 1.2+).
    return hc


async def serve_homeserver(
    cfg: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[list[Bound]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the homeserver until ``shutdown_trigger`` returns, then stop gracefully.

    Args:
        cfg: the loaded configuration.
        shutdown_trigger: awaited by each listener; when it returns, shutdown begins.
        task_status: receives the bound listener addresses once serving.
    """
    db_url = cfg.database_url
    cfg.resolve_path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    await migrate(db_url)
    signing_key: SigningKey = await trio.to_thread.run_sync(
        load_or_create_signing_key, cfg.resolve_path(cfg.signing_key_path), cfg.server_name
    )
    logger.info("server %s, signing key %s", cfg.server_name, signing_key.key_id)

    async with Database.open(db_url, pool_size=cfg.database.pool_size) as db:
        stores = open_stores(db)
        clock = SystemClock()
        rl = cfg.rate_limits
        rate_limiter = RateLimiter(
            {
                "client_default": rl.client_default,
                "login": rl.login,
                "registration": rl.registration,
                "message": rl.message,
                "sms_per_number": rl.sms_per_number,
                "sms_per_ip": rl.sms_per_ip,
            },
            clock,
            enabled=rl.enabled,
        )
        _ = (stores, rate_limiter)  # used by the account and room services as they land
        metrics = HttpMetrics(pool_usage=lambda: (db.pool_stats().in_use, db.pool_stats().size))
        health = HealthService({"database": db.ping}, _with_timeout)

        apis: dict[str, list[object]] = {
            "client": [VersionsApi()],
            "federation": [],
            "media": [],
            "health": [HealthApi(health)],
            "metrics": [MetricsApi(metrics)],
        }

        async with trio.open_nursery() as background:
            bound: list[Bound] = []
            async with trio.open_nursery() as servers:
                for listener in cfg.listeners:
                    app = build_asgi_app(
                        _apis_for(listener.resources, apis),
                        max_body_bytes=cfg.limits.max_request_body_bytes,
                    )
                    asgi = ObservedApp(app, metrics, cfg.cors.allowed_origins)  # type: ignore[arg-type]
                    urls = await servers.start(
                        partial(
                            hypercorn.trio.serve,
                            asgi,  # type: ignore[arg-type]
                            _hypercorn_config(cfg, listener),
                            shutdown_trigger=shutdown_trigger,
                        )
                    )
                    bound.append(Bound(listener, list(urls)))
                    logger.info(
                        "listening on %s (%s)", ", ".join(urls), ", ".join(listener.resources)
                    )
                task_status.started(bound)
            logger.info("listeners stopped; stopping background tasks")
            background.cancel_scope.cancel()
    logger.info("database closed; shutdown complete")
