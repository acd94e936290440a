//! Readiness for systemd (`Type=notify` in packaging/csm.service): once the backend is
//! chosen, the eBPF programs are attached and every collector runs, `systemctl start
//! csm` returns and units ordered after csm start. Outside systemd (`NOTIFY_SOCKET`
//! unset) this does nothing.

use std::path::Path;

use tracing::{debug, warn};

/// Sends `READY=1` with a status line to the service manager.
pub fn notify_ready(data_dir: &Path) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let status = format!("collecting into {}", data_dir.display());
    let states = [
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ];
    match sd_notify::notify(&states) {
        Ok(()) => debug!("told systemd we are ready"),
        // systemd would kill us at TimeoutStartSec: say why that will happen.
        Err(err) => warn!("cannot tell systemd we are ready (NOTIFY_SOCKET): {err}"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    /// The datagram systemd would receive. (Touches NOTIFY_SOCKET: the only test in
    /// this crate that does.)
    #[test]
    fn sends_ready_and_status_to_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // No other test of this crate reads or writes NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready(Path::new("/var/lib/csm"));
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 256];
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "READY=1\nSTATUS=collecting into /var/lib/csm\n"
        );
    }
}
