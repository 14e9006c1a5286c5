"""A stand-in SageMaker serving program for the tests (stdlib only, starts in ~0.1 s).

Contract as trainers/cnn/serve.py: `python serve.py serve`, env SM_MODEL_DIR,
SAGEMAKER_BIND_TO_PORT, HPT_SERVE_HOST; GET /ping 503 until the model is loaded, then 200;
POST /invocations with application/json {"instances": [...]} -> {"predictions": [...],
"probabilities": [[...]]}; 4xx {"error": ...} for bad payloads.

The model it "loads" is the faulty test trainer's model dir (seen.json). Its behaviour per
training job comes from STANDIN_MODES, a JSON object {training-job name: mode} (the job is
the name of the model dir's parent folder, as hpt serve lays them out):
    ok        predictions = sum of each instance's numbers mod 10 (the default)
    other     a different model: (that + 1) mod 10
    fail      every request 500
    fail50    every second request 500 (exactly half)
    slow2     sleeps 2 s per request, then answers as ok
    crash     exits at once with an error (never becomes ready)
    loadfail  runs, but its model fails to load: /ping 503 {"status": "failed", "error": ...}
              forever, as trainers/cnn/serve.py does
STANDIN_LOAD_SECONDS (default 0.5) is how long "loading" takes (/ping 503 meanwhile).
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL_DIR = Path(os.environ["SM_MODEL_DIR"])
JOB = MODEL_DIR.parent.name
MODE = json.loads(os.environ.get("STANDIN_MODES") or "{}").get(JOB, "ok")
loaded = threading.Event()
counter = {"n": 0}
lock = threading.Lock()


def load():
    time.sleep(float(os.environ.get("STANDIN_LOAD_SECONDS", "0.5")))
    json.loads((MODEL_DIR / "seen.json").read_text())  # the model must be there
    loaded.set()


def flatten(value):
    if isinstance(value, list):
        for item in value:
            yield from flatten(item)
    else:
        yield float(value)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real model servers do
    # Headers and body leave in one write: two small writes meet the client's delayed ACK
    # (40 ms per request).
    wbufsize = -1

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, data):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ping" and MODE == "loadfail":
            self.answer(503, {"status": "failed", "error": f"OSError: no weights for {JOB}"})
        elif self.path == "/ping":
            self.answer(200 if loaded.is_set() else 503, {"model": JOB, "loaded": loaded.is_set()})
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/invocations":
            return self.answer(404, {"error": "not found"})
        if not loaded.is_set():
            return self.answer(503, {"error": "model not loaded yet"})
        with lock:
            counter["n"] += 1
            n = counter["n"]
        if MODE == "fail" or (MODE == "fail50" and n % 2 == 0):
            return self.answer(500, {"error": f"deliberate failure of {JOB} ({MODE})"})
        if MODE == "slow2":
            time.sleep(2.0)
        if "json" not in (self.headers.get("Content-Type") or ""):
            return self.answer(415, {"error": "send application/json"})
        try:
            instances = json.loads(body)["instances"]
            labels = [int(sum(flatten(x))) % 10 for x in instances]
        except (ValueError, KeyError, TypeError) as exc:
            return self.answer(400, {"error": f"bad payload: {exc}"})
        if MODE == "other":
            labels = [(label + 1) % 10 for label in labels]
        self.answer(200, {"predictions": labels,
                          "probabilities": [[1.0 if k == label else 0.0 for k in range(10)]
                                            for label in labels],
                          "model": JOB})


if __name__ == "__main__":
    assert sys.argv[1:] == ["serve"], sys.argv
    if MODE == "crash":
        print(f"stand-in for {JOB}: crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    ThreadingHTTPServer.request_queue_size = 256  # the router opens many connections at once
    server = ThreadingHTTPServer((os.environ["HPT_SERVE_HOST"],
                                  int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler)
    server.daemon_threads = True
    threading.Thread(target=load, daemon=True).start()
    print(f"stand-in for {JOB} ({MODE}) on port {server.server_address[1]}", flush=True)
    server.serve_forever()
