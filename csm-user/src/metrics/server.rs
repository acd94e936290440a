//! The HTTP endpoint: `GET /metrics`, nothing else, on a thread and runtime of its own so
//! that no client, however slow or hostile, holds up the collectors.
//!
//! A minimal HTTP/1.1 handler rather than hyper: the endpoint answers one GET with one
//! body and closes, and every bound that matters here (the request head's size, the time
//! to send it, the connections at once) is a few lines when the loop is ours; hyper 1
//! with hyper-util would add a dozen crates to the daemon for features (keep-alive,
//! chunked bodies, HTTP/2, upgrades) the endpoint must not offer.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::timeout;
use tracing::{info, warn};

use super::listen::Listen;
use super::registry::{Format, Metrics};

/// The most bytes of a request head (request line and headers); a longer one is refused
/// with 431 and the connection closed.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most time a client has to send its request head (slowloris).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The most time the response may take to be written (a client that does not read).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; past it a new connection is closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// After accept fails (the descriptor table is full): a pause, not a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The running endpoint; dropping it stops the thread and removes a unix socket.
pub struct Endpoint {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket_path: Option<PathBuf>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds now (so that a taken port is an error at start) and serves on a new thread.
pub fn start(listen: &Listen, metrics: Arc<Metrics>) -> Result<Endpoint, String> {
    let (bound, socket_path) = bind(listen)?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("csm-metrics".into())
        .spawn(move || serve_on_own_runtime(bound, metrics, stop_rx))
        .map_err(|err| format!("metrics endpoint: cannot start its thread: {err}"))?;
    info!("metrics endpoint: serving GET /metrics on {listen}");
    Ok(Endpoint {
        stop: Some(stop_tx),
        thread: Some(thread),
        socket_path,
    })
}

fn bind(listen: &Listen) -> Result<(Bound, Option<PathBuf>), String> {
    match listen {
        Listen::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|err| format!("metrics.listen {addr}: cannot listen: {err}"))?;
            set_nonblocking(listener.set_nonblocking(true), listen)?;
            Ok((Bound::Tcp(listener), None))
        }
        Listen::Unix { path, mode } => {
            remove_stale_socket(path)?;
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(|err| {
                format!("metrics.listen {}: cannot listen: {err}", path.display())
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).map_err(
                |err| {
                    format!(
                        "metrics.listen {}: cannot set its mode: {err}",
                        path.display()
                    )
                },
            )?;
            set_nonblocking(listener.set_nonblocking(true), listen)?;
            Ok((Bound::Unix(listener), Some(path.clone())))
        }
    }
}

fn set_nonblocking(result: io::Result<()>, listen: &Listen) -> Result<(), String> {
    result.map_err(|err| format!("metrics.listen {listen}: {err}"))
}

/// A socket left by a previous run is replaced; anything else at the path (a file, a
/// link someone planted) is refused, never removed or followed.
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(|err| {
            format!(
                "metrics.listen {}: cannot replace the old socket: {err}",
                path.display()
            )
        }),
        Ok(_) => Err(format!(
            "metrics.listen {}: exists and is not a socket (refusing to replace it)",
            path.display()
        )),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!("metrics.listen {}: {err}", path.display())),
    }
}

fn serve_on_own_runtime(bound: Bound, metrics: Arc<Metrics>, stop: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            warn!("metrics endpoint: cannot start its runtime: {err}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        tokio::select! {
            _ = serve(bound, metrics) => {}
            _ = stop => {}
        }
    });
}

async fn serve(bound: Bound, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    match bound {
        Bound::Tcp(listener) => {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(err) => return warn!("metrics endpoint: {err}"),
            };
            loop {
                let accepted = listener.accept().await.map(|(stream, _)| stream);
                admit(accepted, &slots, &metrics).await;
            }
        }
        Bound::Unix(listener) => {
            let listener = match tokio::net::UnixListener::from_std(listener) {
                Ok(listener) => listener,
                Err(err) => return warn!("metrics endpoint: {err}"),
            };
            loop {
                let accepted = listener.accept().await.map(|(stream, _)| stream);
                admit(accepted, &slots, &metrics).await;
            }
        }
    }
}

/// Serves a new connection if a slot is free; else closes it at once.
async fn admit<S>(accepted: io::Result<S>, slots: &Arc<Semaphore>, metrics: &Arc<Metrics>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let stream = match accepted {
        Ok(stream) => stream,
        Err(_) => {
            // EMFILE/ENFILE/ENOBUFS: whatever fills the table frees it in time.
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            return;
        }
    };
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        return; // dropped: closed
    };
    let metrics = metrics.clone();
    tokio::task::spawn_local(async move {
        answer(stream, &metrics).await;
        drop(permit);
    });
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics(Format),
    NotFound,
    MethodNotAllowed,
    Bad,
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, metrics: &Metrics) {
    let response = match timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => return, // too slow: closed without a word
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => simple(431, "Request Header Fields Too Large"),
        Ok(Ok(head)) => match parse_request(&head) {
            Request::Metrics(_) if !metrics.ready() => simple(503, "Service Unavailable"),
            Request::Metrics(format) => {
                let body = metrics.encode(format);
                response(200, "OK", format.content_type(), body.as_bytes())
            }
            Request::NotFound => simple(404, "Not Found"),
            Request::MethodNotAllowed => simple(405, "Method Not Allowed"),
            Request::Bad => simple(400, "Bad Request"),
        },
    };
    let _ = timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
}

enum HeadError {
    Closed,
    TooLarge,
}

/// The request head, up to its blank line, at most [`MAX_HEAD_BYTES`].
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_blank_line(&head[searched_from..]) {
            head.truncate(searched_from + end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The request line and the `Accept` header of a head.
pub fn parse_request(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    if method != "GET" {
        return Request::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Request::NotFound;
    }
    let accept = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("accept")
            .then(|| value.trim())
    });
    Request::Metrics(Format::from_accept(accept))
}

fn simple(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{reason}\n");
    response(code, reason, "text/plain; charset=utf-8", body.as_bytes())
}

fn response(code: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_others_text() {
        let prometheus = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
        assert_eq!(
            parse_request(prometheus),
            Request::Metrics(Format::OpenMetrics)
        );
        let curl = b"GET /metrics HTTP/1.1\r\nHost: x\r\naccept: */*\r\n";
        assert_eq!(parse_request(curl), Request::Metrics(Format::Text));
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0"),
            Request::Metrics(Format::Text)
        );
    }

    fn get(path: &Path, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        let _ = stream.write_all(request);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn a_unix_socket_serves_with_its_mode_and_refuses_to_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        let listen = Listen::Unix {
            path: path.clone(),
            mode: 0o600,
        };
        let metrics = Arc::new(Metrics::new("proc", 0));
        let endpoint = start(&listen, metrics.clone()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ok = get(&path, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("csm_build_info{version="), "{ok}");
        let missing = get(&path, b"GET /other HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 2 * MAX_HEAD_BYTES));
        let refused = get(&path, &big);
        assert!(
            refused.is_empty() || refused.starts_with("HTTP/1.1 431"),
            "{refused}"
        );
        drop(endpoint);
        assert!(!path.exists(), "the socket is removed at stop");

        std::fs::write(&path, "not a socket").unwrap();
        let err = start(&listen, metrics).err().unwrap();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(parse_request(b"GET / HTTP/1.1"), Request::NotFound);
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1"),
            Request::MethodNotAllowed
        );
        assert_eq!(parse_request(b"GET /metrics"), Request::Bad);
        assert_eq!(parse_request(b"\xff\xfe"), Request::Bad);
    }
}
