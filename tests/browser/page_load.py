"""Loads a page in headless Chromium, records every response the Network
domain reports, saves a screenshot, and prints what it saw as JSON: the
HTTP/2 browser test's client (tests/http2_browser.rs).

    page_load.py URL SCREENSHOT_PNG SPKI_DER_FILE

SPKI_DER_FILE holds the server certificate's SubjectPublicKeyInfo (DER):
Chromium trusts exactly that key (--ignore-certificate-errors-spki-list),
so the page loads as over any valid certificate, without a CA install.

The JSON printed: {"responses": [{url, status, protocol, connection_id,
connection_reused, remote_port, finished, ms}], "failed": [...], "load_ms",
"caption"} where caption is what the page itself wrote once loaded.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect

from drive import FLAGS, chromium, devtools_port

DEADLINE_S = 30
WIDTH, HEIGHT = 944, 580


def main():
    url, screenshot, spki_file = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(spki_file, "rb") as file:
        spki = base64.b64encode(hashlib.sha256(file.read()).digest()).decode()
    # The test kills this script with SIGTERM when it takes too long: the
    # finally below still takes Chromium down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("page_load.py: terminated"))
    deadline = time.time() + DEADLINE_S
    profile = tempfile.mkdtemp(prefix="rsp-chromium-")
    browser = subprocess.Popen(
        [
            chromium(), *FLAGS, "--disable-extensions", "--hide-scrollbars",
            f"--window-size={WIDTH},{HEIGHT}", f"--ignore-certificate-errors-spki-list={spki}",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: the renderers and helpers go down with it.
        start_new_session=True,
    )
    try:
        port = devtools_port(profile, deadline)
        pages = []
        while not pages:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            pages = [t for t in targets if t["type"] == "page"]
            if time.time() > deadline:
                sys.exit(f"page_load.py: no page: {targets}")
            time.sleep(0.05)
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as page:
            print(json.dumps(load(page, url, screenshot, deadline)))
    finally:
        try:
            os.killpg(browser.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


def load(page, url, screenshot, deadline):
    ids = iter(range(1, 1 << 30))
    events = []

    def receive():
        left = deadline - time.time()
        if left <= 0:
            sys.exit(f"page_load.py: {url} did not finish loading; events so far: {json.dumps(events)[-4000:]}")
        return json.loads(page.recv(timeout=left))

    def call(method, **params):
        message_id = next(ids)
        page.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = receive()
            if message.get("id") == message_id:
                if "error" in message:
                    sys.exit(f"page_load.py: {method}: {message['error']}")
                return message["result"]
            if "method" in message:
                events.append(message)

    call("Network.enable")
    call("Network.setCacheDisabled", cacheDisabled=True)
    call("Page.enable")
    # A fixed viewport, whatever the headless window is: the screenshot's size.
    call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
    started = time.time()
    call("Page.navigate", url=url)

    requests = {}  # requestId -> url
    sent, ended = {}, {}  # requestId -> Chromium's timestamps (seconds)
    responses = {}  # requestId -> what responseReceived said
    finished, failed = set(), {}
    loaded = None

    def handle(event):
        nonlocal loaded
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
            sent[params["requestId"]] = params["timestamp"]
        elif method == "Network.responseReceived":
            response = params["response"]
            responses[params["requestId"]] = {
                "url": response["url"],
                "status": response["status"],
                "protocol": response.get("protocol"),
                "connection_id": response.get("connectionId"),
                "connection_reused": response.get("connectionReused"),
                "remote_port": response.get("remotePort"),
            }
        elif method == "Network.loadingFinished":
            finished.add(params["requestId"])
            ended[params["requestId"]] = params["timestamp"]
        elif method == "Network.loadingFailed":
            failed[params["requestId"]] = params.get("errorText")
        elif method == "Page.loadEventFired":
            loaded = time.time()

    for event in events:
        handle(event)
    events.clear()
    # Until the load event, and every request the page made has ended.
    while loaded is None or any(r not in finished and r not in failed for r in requests):
        message = receive()
        if "method" in message:
            events.append(message)
            handle(message)

    # The page writes its caption from its load handler.
    caption = None
    while caption is None:
        value = call(
            "Runtime.evaluate",
            expression="document.getElementById('caption').dataset.done ? document.getElementById('caption').textContent : null",
            returnByValue=True,
        )["result"].get("value")
        caption = value
        if caption is None:
            if time.time() > deadline:
                sys.exit("page_load.py: the page never wrote its caption")
            time.sleep(0.05)
    shot = call("Page.captureScreenshot", format="png")
    with open(screenshot, "wb") as file:
        file.write(base64.b64decode(shot["data"]))

    return {
        "responses": [
            dict(
                responses[r],
                finished=r in finished,
                ms=round((ended[r] - sent[r]) * 1000, 1) if r in ended else None,
            )
            for r in requests
            if r in responses
        ],
        "failed": [{"url": requests[r], "error": error} for r, error in failed.items()],
        "requests": len(requests),
        "load_ms": round((loaded - started) * 1000),
        "caption": caption,
    }


if __name__ == "__main__":
    main()
