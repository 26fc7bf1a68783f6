"""Opens a page in headless Chromium, runs a script in it, and prints what
the script resolves to: a real browser for the admin port's CSRF tests.

    drive.py URL SCRIPT [WAIT_MS]

Chromium is driven over the DevTools protocol (a websocket), so no browser
download and no driver binary are needed beyond Debian's chromium.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect


# How every test starts Chromium (as root, on a closed network), before
# its own flags, the DevTools port and the profile.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit(f"{os.path.basename(sys.argv[0])}: no chromium on PATH (apt-get install chromium)")


def devtools_port(profile, deadline):
    """The DevTools port Chromium (started with --remote-debugging-port=0)
    writes into its profile once it listens."""
    port_file = os.path.join(profile, "DevToolsActivePort")
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if time.time() > deadline:
            sys.exit(f"{os.path.basename(sys.argv[0])}: chromium did not start")
        time.sleep(0.05)
    return open(port_file).read().split()[0]


def main():
    url, script = sys.argv[1], sys.argv[2]
    wait = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    profile = tempfile.mkdtemp(prefix="rsp-chromium-")
    browser = subprocess.Popen(
        [chromium(), *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 20
        port = devtools_port(profile, deadline)
        pages = []
        while not pages:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            pages = [t for t in targets if t["type"] == "page" and t["url"].startswith("http")]
            if time.time() > deadline:
                sys.exit(f"drive.py: no page for {url}: {targets}")
            time.sleep(0.05)
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as page:
            ids = iter(range(1, 1 << 30))

            def call(method, **params):
                message_id = next(ids)
                page.send(json.dumps({"id": message_id, "method": method, "params": params}))
                while True:
                    answer = json.loads(page.recv(timeout=30))
                    if answer.get("id") == message_id:
                        return answer

            # Wait for the page itself (not the blank one before it) to load.
            loaded = f"document.readyState === 'complete' && location.href === {json.dumps(url)}"
            while call("Runtime.evaluate", expression=loaded)["result"]["result"].get("value") is not True:
                if time.time() > deadline:
                    sys.exit(f"drive.py: {url} did not load")
                time.sleep(0.05)
            answer = call("Runtime.evaluate", expression=script, awaitPromise=True, returnByValue=True)
            time.sleep(wait / 1000)
            if "error" in answer:
                sys.exit(f"drive.py: {answer['error']}")
            result = answer["result"]
            if "exceptionDetails" in result:
                print("exception:", json.dumps(result["exceptionDetails"]))
            else:
                print(json.dumps(result["result"].get("value")))
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
