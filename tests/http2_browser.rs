//! HTTP/2 to a real browser: headless Chromium (Debian's package, installed
//! when missing; driven over the DevTools protocol by
//! tests/browser/page_load.py) loads a page of 50 images from a real nginx
//! through rsp's TLS listener, and every one of the 51 responses comes over
//! h2 on one connection: as Chromium's Network domain reports them, and as
//! rsp's access log writes them. The screenshot is docs/http2-chromium.png.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use serde_json::Value;

use common::*;

const IMAGES: usize = 50;

/// The page: a grid of `IMAGES` coloured squares, each an `<img>` of its
/// own SVG, and a caption the page writes once loaded from what its own
/// Resource Timing entries say about the protocol.
fn page() -> String {
    let images: String = (0..IMAGES)
        .map(|i| format!("<img src=\"/img/{i}.svg\" alt=\"{i}\">"))
        .collect();
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>rsp: HTTP/2 to Chromium</title>
<link rel="icon" href="data:,">
<style>
body {{ margin: 24px; font-family: sans-serif; background: #f6f6f6; color: #222; }}
h1 {{ font-size: 22px; margin: 0 0 16px; }}
#grid {{ display: grid; grid-template-columns: repeat(10, 80px); gap: 8px; }}
img {{ width: 80px; height: 80px; display: block; }}
#caption {{ font-size: 18px; margin-top: 16px; }}
</style></head>
<body>
<h1>{IMAGES} images through rsp, one HTTP/2 connection</h1>
<div id="grid">{images}</div>
<p id="caption">loading</p>
<script>
addEventListener("load", () => {{
  const page = performance.getEntriesByType("navigation")[0];
  const images = performance.getEntriesByType("resource").filter((entry) => entry.initiatorType === "img");
  const h2 = images.filter((entry) => entry.nextHopProtocol === "h2").length;
  const caption = document.getElementById("caption");
  caption.textContent = `page over ${{page.nextHopProtocol}}; ${{h2}} of ${{images.length}} images over h2`;
  caption.dataset.done = "1";
}});
</script>
</body></html>
"#
    )
}

/// Image `i`: a square of its own hue with its number.
fn square(i: usize) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="80" viewBox="0 0 80 80"><rect width="80" height="80" rx="10" fill="hsl({hue},70%,48%)"/><text x="40" y="51" font-family="sans-serif" font-size="30" font-weight="bold" text-anchor="middle" fill="white">{number}</text></svg>"#,
        hue = i * 360 / IMAGES,
        number = i + 1
    )
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rsp-h2-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate for 127.0.0.1: `cert.pem`, `key.pem`, and
/// its key's SubjectPublicKeyInfo (`spki.der`), the one key Chromium is
/// told to trust.
fn certificate(dir: &Path) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("cert.pem"), certificate.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("spki.der"), key.subject_public_key_info()).unwrap();
}

/// Runs page_load.py on `url`, the screenshot to `screenshot`; what it
/// printed, parsed. Stopped (with its Chromium) if it takes over 50 s.
fn load_in_chromium(url: &str, screenshot: &Path, dir: &Path) -> Value {
    ensure_package("chromium", "chromium");
    ensure_python_websockets();
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/page_load.py");
    let (stdout, stderr) = (dir.join("driver.out"), dir.join("driver.err"));
    let mut child = Command::new("python3")
        .arg(driver)
        .arg(url)
        .arg(screenshot)
        .arg(dir.join("spki.der"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut exit = None;
    if !wait_until(Duration::from_secs(50), || {
        exit = child.try_wait().unwrap();
        exit.is_some()
    }) {
        // SIGTERM: the driver's own handler takes Chromium down (2 s at
        // most).
        // SAFETY: kill only signals the child we started.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = wait_until(Duration::from_secs(2), || {
            child.try_wait().unwrap().is_some()
        });
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "page_load.py took over 50 s: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
    }
    let status = exit.unwrap();
    let out = std::fs::read_to_string(&stdout).unwrap();
    assert!(
        status.success(),
        "page_load.py: {status}: {}{out}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|error| panic!("page_load.py printed {out:?}: {error}"))
}

/// rsp's JSON access log, once it holds `count` lines (it writes once per
/// loop turn).
fn access_log(path: &Path, count: usize) -> Vec<Value> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    // The lines it holds after 10 s, if fewer: the caller says what is missing.
    let _ = wait_until(Duration::from_secs(10), || read().lines().count() >= count);
    read()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn chromium_loads_a_page_and_its_fifty_images_over_one_http2_connection() {
    let started = Instant::now();
    let dir = scratch_dir();
    certificate(&dir);

    // nginx serves the page and its images (HTTP/1.1 to rsp, as every backend).
    let nginx = Nginx::start("types { text/html html; image/svg+xml svg; }");
    nginx.file("index.html", &page());
    for i in 0..IMAGES {
        nginx.file(&format!("img/{i}.svg"), &square(i));
    }

    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.join("access.log");
    let proxy = Proxy::start_listening(
        &format!(
            "{{ addr = \"{tls}\", tls = {{ cert = \"{d}/cert.pem\", key = \"{d}/key.pem\" }} }}",
            d = dir.display()
        ),
        &format!(
            "backends = {{ \"{}\" }}\naccess_log = \"{}\"\naccess_log_format = \"json\"\n",
            nginx.address,
            log.display()
        ),
    );
    wait_for_listener(tls, &proxy.log);

    let url = format!("https://{tls}/index.html");
    let screenshot = dir.join("http2-chromium.png");
    let seen = load_in_chromium(&url, &screenshot, &dir);
    let loaded = started.elapsed();
    let context = || {
        format!(
            "{seen:#}\nrsp's log:\n{}\n(screenshot and logs kept in {})",
            proxy.log(),
            dir.display()
        )
    };

    // What Chromium saw: the page and every image, all 200, all h2, all
    // on one connection, to rsp's TLS port, and nothing failed.
    assert_eq!(seen["failed"], serde_json::json!([]), "{}", context());
    let responses = seen["responses"].as_array().unwrap();
    assert_eq!(seen["requests"], 1 + IMAGES, "{}", context());
    assert_eq!(responses.len(), 1 + IMAGES, "{}", context());
    assert_eq!(responses[0]["url"], url.as_str(), "{}", context());
    let mut wanted: BTreeSet<String> = (0..IMAGES)
        .map(|i| format!("https://{tls}/img/{i}.svg"))
        .collect();
    wanted.insert(url.clone());
    let urls: BTreeSet<String> = responses
        .iter()
        .map(|response| response["url"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(urls, wanted, "{}", context());
    for response in responses {
        assert_eq!(response["protocol"], "h2", "{response}\n{}", context());
        assert_eq!(response["status"], 200, "{response}\n{}", context());
        assert_eq!(response["finished"], true, "{response}\n{}", context());
        assert_eq!(response["remote_port"], tls.port(), "{response}");
    }
    let connections: BTreeSet<String> = responses
        .iter()
        .map(|response| response["connection_id"].to_string())
        .collect();
    assert_eq!(
        connections.len(),
        1,
        "connection ids {connections:?}\n{}",
        context()
    );
    // The page's own view (Resource Timing), as the screenshot shows it.
    assert_eq!(
        seen["caption"],
        format!("page over h2; {IMAGES} of {IMAGES} images over h2"),
        "{}",
        context()
    );

    // What rsp saw: 51 HTTP/2 requests, all answered 200 by nginx, all from
    // one client port (one connection).
    let lines = access_log(&log, 1 + IMAGES);
    assert_eq!(lines.len(), 1 + IMAGES, "{lines:#?}\n{}", context());
    for line in &lines {
        assert_eq!(line["protocol"], "HTTP/2.0", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["backend_status"], 200, "{line}");
        assert_eq!(line["completed"], true, "{line}");
    }
    let ports: BTreeSet<String> = lines
        .iter()
        .map(|line| line["client_port"].to_string())
        .collect();
    assert_eq!(ports.len(), 1, "client ports {ports:?}");
    let targets: BTreeSet<String> = lines
        .iter()
        .map(|line| format!("https://{tls}{}", line["target"].as_str().unwrap()))
        .collect();
    assert_eq!(targets, wanted);
    // And nginx behind it heard each of them once, over HTTP/1.1.
    let nginx_log = nginx.access_log();
    assert_eq!(
        nginx_log.matches(" HTTP/1.1\" 200 ").count(),
        1 + IMAGES,
        "{nginx_log}"
    );

    // Only a load that passed replaces the picture in docs/.
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(&screenshot, docs.join("http2-chromium.png")).unwrap();
    eprintln!(
        "51 responses over h2 on connection {connections:?}, client port {ports:?}; \
         Chromium's load took {} ms, the whole test {:.1} s (page loaded at {:.1} s)",
        seen["load_ms"],
        started.elapsed().as_secs_f64(),
        loaded.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
