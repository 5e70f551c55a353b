"""Container health check of a worker: its web server answers /metrics and a model is being served.

The port is the worker's own setting (``ISTREAM_WORKER_WEB_PORT``), read through the same Settings
object, so the check follows the worker when the port changes. Exit 0 = healthy, 1 = not.
"""

from __future__ import annotations

import sys
import urllib.request

from stream_app.settings import Settings

# Present once the worker has loaded and verified a model bundle (stream_app/worker/metrics.py).
MODEL_SERVED = b"istream_model_info{"


def main() -> int:
    port = Settings().worker_web_port
    if port == 0:
        print("the worker web server is off (ISTREAM_WORKER_WEB_PORT=0); enable it to health-check the worker")
        return 1
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            body = response.read()
    except OSError as exc:
        print(f"{url}: {exc}")
        return 1
    if MODEL_SERVED not in body:
        print(f"{url} answers but no model is served yet (no istream_model_info)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
