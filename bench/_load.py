"""The HTTP load driver the API benches share: a server in its own process, one asyncio httpx client
with a fixed number of requests in flight, a warm-up, then a fixed number of requests.

A bench script serves itself: ``python <script> --serve KIND --port P`` must start the server of
that kind (a constant-response FastAPI app, ``constant_app``, is the usual baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

WARM_UP = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def constant_app() -> Any:
    """A FastAPI app with two baselines: ``GET /constant`` returns a constant JSON object, and
    ``POST /parse`` parses the request body with orjson, then returns the same constant (the floor
    for any route that must read a large JSON body before it does anything of its own)."""
    from fastapi import FastAPI
    from starlette.responses import JSONResponse

    app = FastAPI()

    @app.get("/constant")
    def constant() -> dict[str, str]:
        return {"status": "ok"}

    async def parse(request: Any) -> JSONResponse:  # a plain Starlette route: the request as it came
        orjson.loads(await request.body())
        return JSONResponse({"status": "ok"})

    app.router.add_route("/parse", parse, methods=["POST"])
    return app


def arguments(parser: argparse.ArgumentParser) -> argparse.Namespace | None:
    """``parser`` with the driver's options (``--requests``, ``--concurrency``, and ``--serve``/``--port``
    that ``measure`` starts servers with), parsed; None after serving when this process is a server."""
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return None
    return args


def serve(kind: str, port: int) -> None:
    """Serve ``kind`` on ``port`` with one uvicorn worker: ``constant`` is ``constant_app``, anything
    else the VitalOps API of the home in ``VITALOPS_HOME``."""
    import uvicorn

    if kind == "constant":
        app = constant_app()
    else:
        from vitalops.api.app import create_app

        app = create_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def drive(url: str, headers: dict[str, str], total: int, concurrency: int,
                bodies: list[dict[str, Any]] | None = None,
                headers_for: Callable[[], dict[str, str]] | None = None) -> tuple[float, list[float]]:
    """``total`` requests (GET, or POST of ``bodies`` in turn) with ``concurrency`` in flight, after a
    warm-up; requests/s and each request's latency in seconds. ``headers_for`` gives each request
    (warm-up included) headers of its own, such as a token used once."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # Bodies encoded once, before the clock starts: the client's own JSON encoding is not measured.
    encoded = None if bodies is None else [orjson.dumps(body) for body in bodies]
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:
        async def call(index: int) -> httpx.Response:
            extra = headers_for() if headers_for is not None else None
            if bodies is None:
                return await client.get(url, headers=extra)
            return await client.post(url, content=encoded[index % len(encoded)],
                                     headers={"Content-Type": "application/json", **(extra or {})})

        for index in range(WARM_UP):
            (await call(index)).raise_for_status()
        latencies: list[float] = []
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await call(remaining)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - started), latencies


def measure(script: str, kind: str, path: str, headers: dict[str, str], *, total: int, concurrency: int,
            bodies: list[dict[str, Any]] | None = None, env: dict[str, str] | None = None,
            label: str | None = None, headers_for: Callable[[], dict[str, str]] | None = None) -> dict[str, float]:
    """Start ``script --serve kind`` on a free port, drive ``path``, stop it; requests/s, p50 and p99 (ms)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, script, "--serve", kind, "--port", str(port)],
                               env=env or dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the {kind} server did not start") from None
                time.sleep(0.1)
        rate, latencies = asyncio.run(drive(f"http://127.0.0.1:{port}{path}", headers, total, concurrency, bodies,
                                            headers_for))
    finally:
        process.terminate()
        process.wait(timeout=30)
    cuts = statistics.quantiles(latencies, n=100)
    figures = {"rate": rate, "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}
    print(f"  {label or kind:<22} {rate:8,.0f} requests/s   p50 {figures['p50_ms']:7.1f} ms   "
          f"p99 {figures['p99_ms']:7.1f} ms")
    return figures
