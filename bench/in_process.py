"""The generated FastAPI app driven in-process, with no HTTP server: its own cost per request.

Run inside a generated image (its package, its model), with this folder mounted:

    docker run --rm --network none -v "$PWD/bench:/bench:ro" --entrypoint python IMAGE \
        /bench/in_process.py [--package iris_classifier] [--endpoint infer] [--profile]

Each round sends `--concurrency` 1-row requests at once, as wrk's connections do, through
the app's ASGI entry (middleware, routing, validation, the micro-batcher and the model),
and waits for all of them (the row is the default render's: 4 features). Prints requests
per second and microseconds a request for three lengths of run; with `--profile`,
cProfile's top functions over one more run.
cProfile counts wall time: a call that lets go of the GIL is charged the wait to get it
back from the model's thread, which is how the GIL's hand-offs show in its table.
"""

import argparse
import asyncio
import importlib
import json
import logging.config
import os
import sys
import tempfile
import time

ROW = [5.1, 3.5, 1.4, 0.2]


def path_and_body(endpoint: str, metadata: dict) -> tuple[str, bytes]:
    if endpoint == "predict":
        return "/predict", json.dumps({"instances": [ROW]}).encode()
    tensor = {"name": metadata["inputs"][0]["name"], "shape": [1, len(ROW)],
              "datatype": "FP32", "data": ROW}  # fmt: skip
    return f"/v2/models/{metadata['name']}/infer", json.dumps({"inputs": [tensor]}).encode()


async def request(app, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}  # fmt: skip
    answered, sent = asyncio.Event(), []

    async def receive() -> dict:
        if not sent:
            sent.append(body)
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()  # the client stays until its answer, as wrk's does
        return {"type": "http.disconnect"}

    messages = []

    async def send(message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    answered.set()
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


async def rounds(app, path: str, body: bytes, count: int, concurrency: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        answers = await asyncio.gather(
            *(request(app, "POST", path, body) for _ in range(concurrency))
        )
        if (statuses := {status for status, _ in answers}) != {200}:
            raise SystemExit(f"{path} answered {sorted(statuses)}, not only 200")
    return time.perf_counter() - started


async def main(args) -> None:
    app_module = importlib.import_module(f"{args.package}.app")
    logs = importlib.import_module(f"{args.package}.logs")
    logging.config.dictConfig(logs.config(args.log_level))
    devnull = open(os.devnull, "w")  # for the whole run
    for handler in logging.getLogger().handlers:
        handler.setStream(devnull)  # the lines are formatted and written, to nowhere
    app = app_module.create_app()
    async with app.router.lifespan_context(app):
        while (await request(app, "GET", "/readyz", b""))[0] != 200:
            await asyncio.sleep(0.05)
        metadata = json.loads((await request(app, "GET", "/metadata", b""))[1])
        path, body = path_and_body(args.endpoint, metadata)
        for count in (200, 1000, 1000):
            seconds = await rounds(app, path, body, count, args.concurrency)
            served = count * args.concurrency
            print(f"{path}: {served / seconds:8.0f} requests/s, "
                  f"{seconds / served * 1e6:6.1f} us a request ({served} requests)")  # fmt: skip
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            await rounds(app, path, body, 300, args.concurrency)
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(40)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="iris_classifier", help="the render's package")
    parser.add_argument("--endpoint", choices=["predict", "infer"], default="predict")
    parser.add_argument("--concurrency", type=int, default=32, help="requests a round")
    parser.add_argument("--log-level", default="info", help="info: an access line a request")
    parser.add_argument("--profile", action="store_true", help="cProfile one more run")
    parser.add_argument("--sort", default="tottime", help="cProfile's order: tottime, cumtime")
    args = parser.parse_args()
    # As gunicorn_conf.py sets it: metrics in files summed over workers.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp())
    sys.path.insert(0, "/app/src")
    asyncio.run(main(args))
