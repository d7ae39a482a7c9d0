"""The baseline, built the way Gate's sample client and the InfluxDB docs suggest:
websocket-client with one thread per account, json, influxdb_client.Point and its
batching WriteApi (v2)."""

from __future__ import annotations

import argparse
import json
import threading
import time

import websocket
from influxdb_client import InfluxDBClient, Point, WriteOptions

from collector.gate.protocol import ASSET_DETAIL, subscribe
from collector.gate.signing import ApiCredentials


def main(args: argparse.Namespace) -> None:
    keys = json.loads(open(args.keys).read())  # noqa: SIM115
    client = InfluxDBClient(url=args.influx, token="bench", org="gate")
    write_api = client.write_api(write_options=WriteOptions(batch_size=5000, flush_interval=1000))
    lock = threading.Lock()
    state = {"updates": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()

    def on_message(ws: websocket.WebSocketApp, message: str) -> None:
        frame = json.loads(message)
        if frame.get("event") != "update":
            return
        result = frame["result"]
        points = []
        for currency, values in result["dts"].items():
            point = (
                Point("baseline_asset_detail").tag("account", ws.account).tag("currency", currency)
            )
            for key, value in values.items():
                point.field(key, float(value))
            point.field("u", result["u"]).time(frame["time_ms"], "ms")
            points.append(point)
        write_api.write(bucket="gate", record=points)
        with lock:
            now = time.monotonic()
            state["first"] = state["first"] or now
            state["last"] = now
            state["updates"] += 1
            if state["updates"] >= args.expect:
                done.set()

    def on_open(ws: websocket.WebSocketApp) -> None:
        request = subscribe(
            ASSET_DETAIL, ["!all"], int(time.time()), ApiCredentials(ws.key, ws.secret)
        )
        ws.send(request.decode())

    apps = []
    for account, (key, secret) in keys.items():
        app = websocket.WebSocketApp(args.url, on_message=on_message, on_open=on_open)
        app.account, app.key, app.secret = account, key, secret
        threading.Thread(target=app.run_forever, daemon=True).start()
        apps.append(app)
    cpu = time.process_time()
    done.wait(timeout=1800)
    write_api.close()  # flushes the batches
    flushed = time.monotonic()
    for app in apps:
        app.close()
    print(
        json.dumps(
            {"updates": state["updates"], "end": flushed, "cpu_seconds": time.process_time() - cpu}
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True)
    parser.add_argument("--influx", required=True)
    parser.add_argument("--expect", type=int, required=True)
    main(parser.parse_args())
