//! One ICMP socket per address family, shared by every target, with a receive task that
//! hands each reply to the echo waiting for exactly it.
//!
//! RTTs use the kernel's receive timestamp (`SO_TIMESTAMPNS`, as iputils does) minus the
//! time taken just before `sendto`, so a runtime busy with other work (a Parquet flush)
//! when a reply arrives does not lengthen the RTT.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use super::codec;

/// 16 bytes of payload: small, and recognisable in a packet capture.
const PAYLOAD: &[u8; 16] = b"csm ping payload";

/// What became of one echo.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Reply(Duration),
    /// No answer before the deadline: plain loss.
    Lost,
    /// The kernel refused to send it (no route, permission…).
    NotSent(String),
    /// A router (or the local stack) answered with an ICMP error instead.
    IcmpError(String),
}

/// A matched reply, and when it came.
struct Arrival {
    kernel_time: Option<SystemTime>,
    seen: Instant,
    error: Option<String>,
}

/// (address pinged, identifier, sequence).
type Key = (IpAddr, u16, u16);

/// The echoes waiting for a reply. A reply goes to the one echo with its key and to
/// nobody else: removing the waiter makes a duplicate find nobody, and a late reply finds
/// nobody either (its echo gave up and unregistered).
struct Waiters {
    /// Datagram sockets match on address and sequence only: the kernel replaces the
    /// identifier, and only delivers replies that carry the one it chose.
    match_ident: bool,
    map: RefCell<HashMap<Key, oneshot::Sender<Arrival>>>,
}

impl Waiters {
    fn new(match_ident: bool) -> Self {
        Waiters {
            match_ident,
            map: RefCell::new(HashMap::new()),
        }
    }

    fn key(&self, addr: IpAddr, ident: u16, seq: u16) -> Key {
        (addr, if self.match_ident { ident } else { 0 }, seq)
    }

    fn register(&self, key: Key) -> oneshot::Receiver<Arrival> {
        let (tx, rx) = oneshot::channel();
        self.map.borrow_mut().insert(key, tx);
        rx
    }

    fn cancel(&self, key: &Key) {
        self.map.borrow_mut().remove(key);
    }

    /// Hands `arrival` to the echo `incoming` answers; false when nobody waits for it.
    fn deliver(&self, incoming: codec::Incoming, mut arrival: Arrival) -> bool {
        let key = self.key(incoming.dest, incoming.ident, incoming.seq);
        let Some(tx) = self.map.borrow_mut().remove(&key) else {
            return false;
        };
        arrival.error = incoming.error;
        tx.send(arrival).is_ok()
    }
}

pub struct IcmpSocket {
    fd: AsyncFd<Socket>,
    v6: bool,
    raw: bool,
    waiters: Waiters,
}

impl IcmpSocket {
    /// A raw socket where allowed (root, CAP_NET_RAW), else the unprivileged datagram
    /// socket (`net.ipv4.ping_group_range`); starts its receive task.
    pub fn open(v6: bool) -> io::Result<Rc<IcmpSocket>> {
        let socket = match new_socket(v6, Type::RAW) {
            Ok(socket) => socket,
            Err(raw_err) => new_socket(v6, Type::DGRAM).map_err(|dgram_err| {
                io::Error::new(
                    dgram_err.kind(),
                    format!("raw: {raw_err}; datagram: {dgram_err}"),
                )
            })?,
        };
        Self::start(socket, v6)
    }

    /// Sets the socket up and starts its receive task.
    fn start(socket: Socket, v6: bool) -> io::Result<Rc<IcmpSocket>> {
        let raw = socket.r#type()? == Type::RAW;
        socket.set_nonblocking(true)?;
        enable_timestamps(&socket)?;
        grow_receive_buffer(&socket);
        // SAFETY: the Socket owns its descriptor, keeps it open until dropped, and
        // always reports the same one.
        let fd = unsafe { AsyncFd::register(socket) }?;
        let socket = Rc::new(IcmpSocket {
            fd,
            v6,
            raw,
            waiters: Waiters::new(raw),
        });
        tokio::task::spawn_local(receive(socket.clone()));
        Ok(socket)
    }

    pub fn kind(&self) -> &'static str {
        if self.raw {
            "raw"
        } else {
            "datagram"
        }
    }

    /// Sends one echo request to `addr` and waits for its reply until `deadline`.
    pub async fn echo(&self, addr: IpAddr, ident: u16, seq: u16, deadline: Instant) -> Outcome {
        let key = self.waiters.key(addr, ident, seq);
        let rx = self.waiters.register(key);
        // Unregisters at every exit, also when the measurement is dropped at stop.
        let _registered = Registered { socket: self, key };
        let packet = codec::echo_request(self.v6, ident, seq, PAYLOAD);
        let (sent_wall, sent_mono) = match self.send(&packet, addr).await {
            Ok(times) => times,
            Err(err) => return Outcome::NotSent(send_error(&err)),
        };
        match timeout_at(deadline, rx).await {
            Ok(Ok(Arrival {
                error: Some(error), ..
            })) => Outcome::IcmpError(error),
            Ok(Ok(arrival)) => Outcome::Reply(rtt(sent_wall, sent_mono, &arrival)),
            Ok(Err(_)) | Err(_) => Outcome::Lost,
        }
    }

    /// Sends, and says when: the times are taken right before the `sendto` that worked.
    async fn send(&self, packet: &[u8], addr: IpAddr) -> io::Result<(SystemTime, Instant)> {
        let to = SockAddr::from(SocketAddr::new(addr, 0));
        loop {
            let mut guard = self.fd.writable().await?;
            let times = (SystemTime::now(), Instant::now());
            match guard.try_io(|fd| fd.get_ref().send_to(packet, &to)) {
                Ok(result) => return result.map(|_| times),
                Err(_would_block) => continue,
            }
        }
    }

    fn deliver(&self, packet: &[u8], from: IpAddr, kernel_time: Option<SystemTime>) {
        let has_ip_header = self.raw && !self.v6;
        let Some(incoming) = codec::parse(packet, from, has_ip_header) else {
            return;
        };
        let arrival = Arrival {
            kernel_time,
            seen: Instant::now(),
            error: None,
        };
        let (seq, ident) = (incoming.seq, incoming.ident);
        if !self.waiters.deliver(incoming, arrival) {
            debug!("ICMP from {from} (ident {ident}, seq {seq}): nobody waits for it");
        }
    }
}

fn new_socket(v6: bool, ty: Type) -> io::Result<Socket> {
    let (domain, protocol) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    Socket::new(domain, ty, Some(protocol))
}

struct Registered<'a> {
    socket: &'a IcmpSocket,
    key: Key,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.socket.waiters.cancel(&self.key);
    }
}

/// The kernel-timestamped RTT; the user-space one when there is no kernel timestamp or
/// the wall clock was stepped in between (then the two disagree).
fn rtt(sent_wall: SystemTime, sent_mono: Instant, arrival: &Arrival) -> Duration {
    let user = arrival.seen.saturating_duration_since(sent_mono);
    let kernel = arrival
        .kernel_time
        .and_then(|t| t.duration_since(sent_wall).ok());
    match kernel {
        Some(k) if k <= user + Duration::from_millis(1) => k,
        _ => user,
    }
}

/// The kernel's refusal, as an error text that names the cause.
fn send_error(err: &io::Error) -> String {
    let cause = match err.raw_os_error() {
        Some(libc::ENETUNREACH) => "network unreachable",
        Some(libc::EHOSTUNREACH) => "host unreachable",
        Some(libc::EACCES | libc::EPERM) => "permission denied",
        Some(libc::EADDRNOTAVAIL) => "address not available",
        _ => "send failed",
    };
    format!("{cause}: {err}")
}

async fn receive(socket: Rc<IcmpSocket>) {
    let mut buf = [0u8; 2048];
    loop {
        let Ok(mut guard) = socket.fd.readable().await else {
            return;
        };
        match guard.try_io(|fd| recv_with_time(fd.get_ref(), &mut buf)) {
            Ok(Ok((len, from, time))) => socket.deliver(&buf[..len], from, time),
            // A pending socket error (an ICMP error the kernel reports this way) is
            // reported once and cleared: nothing to do but go on.
            Ok(Err(err)) => debug!("ICMP receive: {err}"),
            Err(_would_block) => continue,
        }
    }
}

/// Room for the replies of every target at once: all targets with one interval start in
/// the same instant, and a raw socket also queues every ICMP packet of the host (our own
/// requests too, on loopback). With the default 208 KiB, 200 targets lost a third of
/// their replies in the socket (/proc/net/raw "drops").
const RECEIVE_BUFFER: usize = 4 << 20;

fn enable_timestamps(socket: &Socket) -> io::Result<()> {
    set_int_option(socket, libc::SO_TIMESTAMPNS, 1)
}

fn grow_receive_buffer(socket: &Socket) {
    // Beyond net.core.rmem_max needs CAP_NET_ADMIN (root); else take what is allowed.
    if set_int_option(socket, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER as libc::c_int).is_err() {
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    }
}

fn set_int_option(socket: &Socket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid socket and an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmsg`: the packet's length, its sender and the kernel's receive time.
fn recv_with_time(
    socket: &Socket,
    buf: &mut [u8],
) -> io::Result<(usize, IpAddr, Option<SystemTime>)> {
    // SAFETY: every pointer in `msg` points at a live local of the stated size, and the
    // control messages are read with the CMSG_* helpers within msg_controllen.
    unsafe {
        let mut addr: libc::sockaddr_storage = zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let from =
            sender(&addr).ok_or_else(|| io::Error::other("ICMP packet from a non-IP address"))?;
        Ok((n as usize, from, kernel_time(&msg)))
    }
}

/// # Safety
/// `addr` was filled by the kernel.
unsafe fn sender(addr: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            let sin = &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
            Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 => {
            let sin6 = &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
            Some(Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}

/// # Safety
/// `msg` was filled by `recvmsg`.
unsafe fn kernel_time(msg: &libc::msghdr) -> Option<SystemTime> {
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        let header = &*cmsg;
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
            let since_epoch = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            return Some(SystemTime::UNIX_EPOCH + since_epoch);
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(
        kernel_after: Option<Duration>,
        seen_after: Duration,
    ) -> (SystemTime, Instant, Arrival) {
        let wall = SystemTime::now();
        let mono = Instant::now();
        let a = Arrival {
            kernel_time: kernel_after.map(|d| wall + d),
            seen: mono + seen_after,
            error: None,
        };
        (wall, mono, a)
    }

    #[test]
    fn kernel_time_is_preferred() {
        // The reply sat 30 ms in the socket while the runtime flushed Parquet.
        let (w, m, a) = arrival(Some(Duration::from_micros(250)), Duration::from_millis(30));
        assert_eq!(rtt(w, m, &a), Duration::from_micros(250));
    }

    #[test]
    fn a_stepped_clock_falls_back_to_the_monotonic_time() {
        let (w, m, a) = arrival(Some(Duration::from_secs(3600)), Duration::from_millis(2));
        assert_eq!(rtt(w, m, &a), Duration::from_millis(2));
        let (w, m, a) = arrival(None, Duration::from_millis(2));
        assert_eq!(rtt(w, m, &a), Duration::from_millis(2));
    }

    fn reply(dest: &str, ident: u16, seq: u16) -> codec::Incoming {
        codec::Incoming {
            dest: dest.parse().unwrap(),
            ident,
            seq,
            error: None,
        }
    }

    fn now() -> Arrival {
        Arrival {
            kernel_time: None,
            seen: Instant::now(),
            error: None,
        }
    }

    #[test]
    fn a_reply_reaches_its_echo_once() {
        let w = Waiters::new(true);
        let key = w.key("10.0.0.2".parse().unwrap(), 7, 1);
        let mut rx = w.register(key);
        assert!(w.deliver(reply("10.0.0.2", 7, 1), now()));
        assert!(rx.try_recv().is_ok());
        // The duplicate finds nobody.
        assert!(!w.deliver(reply("10.0.0.2", 7, 1), now()));
    }

    #[test]
    fn late_and_foreign_replies_find_nobody() {
        let w = Waiters::new(true);
        let key = w.key("10.0.0.2".parse().unwrap(), 7, 1);
        let _rx = w.register(key);
        assert!(
            !w.deliver(reply("10.0.0.2", 8, 1), now()),
            "other identifier"
        );
        assert!(!w.deliver(reply("10.0.0.2", 7, 2), now()), "other sequence");
        assert!(!w.deliver(reply("10.0.0.3", 7, 1), now()), "other address");
        w.cancel(&key);
        assert!(
            !w.deliver(reply("10.0.0.2", 7, 1), now()),
            "after its echo gave up"
        );
    }

    #[test]
    fn datagram_sockets_ignore_the_identifier() {
        // The kernel rewrote identifier 7 to its own 4242.
        let w = Waiters::new(false);
        let mut rx = w.register(w.key("::1".parse().unwrap(), 7, 3));
        assert!(w.deliver(reply("::1", 4242, 3), now()));
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn an_icmp_error_reaches_the_echo_it_quotes() {
        let w = Waiters::new(true);
        let mut rx = w.register(w.key("192.0.2.7".parse().unwrap(), 7, 1));
        let mut incoming = reply("192.0.2.7", 7, 1);
        incoming.error = Some("host unreachable (code 1)".into());
        assert!(w.deliver(incoming, now()));
        assert!(rx.try_recv().unwrap().error.is_some());
    }

    /// The unprivileged datagram socket, in a network namespace of this thread's own
    /// where `net.ipv4.ping_group_range` lets every group use it (root only; skipped
    /// elsewhere): what a non-root csm gets.
    #[test]
    fn datagram_socket_echoes_in_a_private_namespace() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: this thread alone moves into a new, empty network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").unwrap();
            loopback_up();
            crate::test_support::block_on_local(async {
                let socket = new_socket(false, Type::DGRAM).unwrap();
                let socket = IcmpSocket::start(socket, false).unwrap();
                assert_eq!(socket.kind(), "datagram");
                let until = Instant::now() + Duration::from_secs(1);
                let addr = "127.0.0.1".parse().unwrap();
                match socket.echo(addr, 7, 1, until).await {
                    Outcome::Reply(rtt) => assert!(rtt < Duration::from_millis(100)),
                    other => panic!("{other:?}"),
                }
            });
        })
        .join()
        .unwrap();
    }

    /// `ip link set lo up`, for this thread's namespace.
    fn loopback_up() {
        // SAFETY: ioctls on a fresh socket with a zeroed, NUL-terminated ifreq.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(fd >= 0);
            let mut req: libc::ifreq = zeroed();
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0);
            libc::close(fd);
        }
    }

    #[test]
    fn send_errors_name_the_cause() {
        let err = io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert!(send_error(&err).starts_with("network unreachable: "));
    }
}
