//! The admin port in a real browser (headless Chromium, Debian's package,
//! installed when missing; driven over the DevTools protocol by
//! tests/browser/drive.py): another site's page cannot drain a server, and
//! the stats page's own buttons can.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;

/// Runs `script` in a headless Chromium tab showing `url`; what it
/// resolved to, as JSON text.
/// `wait_ms` more after it resolved (for what its page does next).
fn in_browser(url: &str, script: &str, wait_ms: u32) -> String {
    ensure_package("chromium", "chromium");
    ensure_python_websockets();
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/drive.py");
    let output = Command::new("python3")
        .arg(driver)
        .arg(url)
        .arg(script)
        .arg(wait_ms.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "drive.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A static site on another origin (Python's http.server), killed when dropped.
struct Site {
    child: Child,
    address: SocketAddr,
}

impl Site {
    fn serve(page: &str) -> Site {
        let dir =
            std::env::temp_dir().join(format!("rsp-site-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), page).unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_listener(address, &dir.join("index.html"));
        Site { child, address }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state(admin: SocketAddr, server: usize) -> String {
    let stats: serde_json::Value =
        serde_json::from_slice(&admin_request(admin, "GET", "/stats.json").body).unwrap();
    stats["pools"][0]["servers"][server]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn another_site_cannot_drain_a_server_and_the_stats_page_can() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(&format!(
        "admin = \"{admin}\"\npools = {{ default = {{ servers = {{ \"{}\", \"{}\" }} }} }}\n",
        first.address, second.address
    ));
    let drain = format!(
        "http://{admin}/pools/default/servers/{}/drain",
        first.address
    );

    // Every way a page of another origin can send a POST.
    let evil = Site::serve(&format!(
        r#"<!DOCTYPE html><html><body>
<form id="form" method="post" action="{drain}" target="sink"><input name="a" value="b"></form>
<iframe name="sink"></iframe>
<script>
window.attack = async () => {{
  const results = {{}};
  document.getElementById("form").submit();
  try {{
    await fetch("{drain}", {{ method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }}, body: "x" }});
    results.simple = "sent";
  }} catch (error) {{ results.simple = "blocked"; }}
  try {{
    const answer = await fetch("{drain}", {{ method: "POST", headers: {{ "X-Rsp-Admin": "1" }} }});
    results.with_header = answer.status;
  }} catch (error) {{ results.with_header = "blocked"; }}
  await new Promise((done) => setTimeout(done, 1000));
  return results;
}};
</script></body></html>"#
    ));
    let results = in_browser(&format!("http://{}/", evil.address), "window.attack()", 0);
    // The simple requests went out and were refused; the one with the
    // header needed a preflight, which rsp does not grant.
    let results: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert_eq!(results["simple"], "sent", "{results}");
    assert_eq!(results["with_header"], "blocked", "{results}");
    assert_eq!(state(admin, 0), "up");
    proxy.wait_for_log("refused: not sent as a deliberate change", 2);

    // The stats page itself: its drain button works.
    let clicked = in_browser(
        &format!("http://{admin}/stats"),
        &format!(
            "document.querySelector('button[data-action=\"/pools/default/servers/{}/drain\"]').click(); 'clicked'",
            first.address
        ),
        1500,
    );
    assert_eq!(clicked, "\"clicked\"");
    assert_eq!(state(admin, 0), "draining");
    assert_eq!(state(admin, 1), "up");
}
