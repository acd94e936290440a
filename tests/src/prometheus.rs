//! A real Prometheus (the Debian `prometheus` package) scraping csm inside a test's
//! network namespace, its HTTP API, and plain HTTP GETs of csm's endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::netns::Netns;

/// The port csm's endpoint listens on in the tests' namespaces (each is new: nothing
/// else listens there).
pub const CSM_PORT: u16 = 9847;
/// Prometheus's own port in the same namespace.
pub const PROMETHEUS_PORT: u16 = 9090;

/// `[metrics]` of a test config: csm's endpoint on the namespace's loopback.
pub fn metrics_config() -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:{CSM_PORT}\"\n")
}

/// A Prometheus server in `ns` scraping csm every second, with its storage in a
/// temporary folder; killed and removed on drop.
pub struct Prometheus<'a> {
    child: Child,
    ns: &'a Netns,
    _dir: tempfile::TempDir,
}

impl<'a> Prometheus<'a> {
    /// Starts it and waits until its first scrape of csm succeeded.
    pub fn start(ns: &'a Netns) -> Prometheus<'a> {
        let dir = tempfile::tempdir().expect("prometheus temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: csm\n    static_configs:\n      - targets: ['127.0.0.1:{CSM_PORT}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let storage: PathBuf = dir.path().join("data");
        let child = ns
            .command("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start prometheus (the Debian package `prometheus`; cargo xtask test installs it)",
            );
        let prometheus = Prometheus {
            child,
            ns,
            _dir: dir,
        };
        crate::wait_until("prometheus scrapes csm", Duration::from_secs(60), || {
            prometheus
                .try_query("up{job=\"csm\"}", None)
                .and_then(|v| scalar_of(&v))
                == Some(1.0)
        });
        prometheus
    }

    /// An instant query at `time` (Unix seconds) or now; the `data.result` array.
    pub fn query(&self, promql: &str, time: Option<f64>) -> Value {
        self.try_query(promql, time)
            .unwrap_or_else(|| panic!("prometheus query {promql} failed"))
    }

    fn try_query(&self, promql: &str, time: Option<f64>) -> Option<Value> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(promql));
        if let Some(time) = time {
            path.push_str(&format!("&time={time:.3}"));
        }
        let body = self
            .ns
            .within(move || http_get(PROMETHEUS_PORT, &path, None).ok());
        let json: Value = serde_json::from_str(&body?.1).ok()?;
        (json["status"] == "success").then(|| json["data"]["result"].clone())
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a one-element instant vector.
pub fn scalar_of(result: &Value) -> Option<f64> {
    let sample = result.as_array()?.first()?;
    sample["value"][1].as_str()?.parse().ok()
}

/// The samples `(unix seconds, value)` of a one-series range vector.
pub fn samples_of(result: &Value) -> Vec<(f64, f64)> {
    let Some(series) = result.as_array().and_then(|a| a.first()) else {
        return Vec::new();
    };
    series["values"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| Some((v[0].as_f64()?, v[1].as_str()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A GET of `path` on 127.0.0.1:`port` (in the caller's namespace): status and body.
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// `promtool check metrics` of an exposition: its output (empty when it accepts it with
/// no warning) and whether it exited 0.
pub fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
