//! ICMP echo packets: building requests and reading what comes back. Pure functions.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PROTO_ICMP: u8 = 1;
const NEXT_HEADER_ICMPV6: u8 = 58;

/// An echo request: type, code, checksum, identifier, sequence, payload.
pub fn echo_request(v6: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let ty = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut packet = vec![ty, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(payload);
    // The ICMPv6 checksum covers a pseudo-header with addresses only the kernel knows
    // for sure: it fills that one in itself (raw and datagram sockets alike).
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What a received ICMP message says about one echo request.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// The address the echo was sent to.
    pub dest: IpAddr,
    pub ident: u16,
    pub seq: u16,
    /// `None` for an echo reply; else what the ICMP error says, and who sent it.
    pub error: Option<String>,
}

/// Reads a packet from `from`. Raw IPv4 sockets deliver the IP header too
/// (`has_ip_header`); IPv6 and datagram sockets deliver the ICMP message alone.
/// `None` for anything that is neither an echo reply nor an error quoting an echo
/// request (our own requests seen on loopback, neighbour discovery…).
pub fn parse(packet: &[u8], from: IpAddr, has_ip_header: bool) -> Option<Incoming> {
    let v6 = from.is_ipv6();
    let icmp = if has_ip_header && !v6 {
        packet.get(ipv4_header_len(packet)?..)?
    } else {
        packet
    };
    let (&ty, &code) = (icmp.first()?, icmp.get(1)?);
    if ty == if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 } {
        let (ident, seq) = ident_seq(icmp)?;
        return Some(Incoming {
            dest: from,
            ident,
            seq,
            error: None,
        });
    }
    let text = icmp_error_text(v6, ty, code)?;
    let quoted = icmp.get(8..)?;
    let (dest, request) = if v6 {
        quoted_v6(quoted)?
    } else {
        quoted_v4(quoted)?
    };
    let (ident, seq) = ident_seq(request)?;
    Some(Incoming {
        dest,
        ident,
        seq,
        error: Some(format!("{text} (ICMP from {from})")),
    })
}

fn ipv4_header_len(packet: &[u8]) -> Option<usize> {
    let len = usize::from(packet.first()? & 0x0f) * 4;
    (len >= 20 && packet.len() >= len).then_some(len)
}

fn ident_seq(icmp: &[u8]) -> Option<(u16, u16)> {
    let b = icmp.get(4..8)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

/// The destination and echo request quoted in an ICMPv4 error.
fn quoted_v4(quoted: &[u8]) -> Option<(IpAddr, &[u8])> {
    let len = ipv4_header_len(quoted)?;
    if quoted.get(9) != Some(&PROTO_ICMP) {
        return None;
    }
    let d = quoted.get(16..20)?;
    let request = quoted.get(len..)?;
    (request.first() == Some(&ECHO_REQUEST_V4))
        .then(|| (Ipv4Addr::new(d[0], d[1], d[2], d[3]).into(), request))
}

/// The destination and echo request quoted in an ICMPv6 error (no extension headers:
/// csm's requests carry none).
fn quoted_v6(quoted: &[u8]) -> Option<(IpAddr, &[u8])> {
    if quoted.get(6) != Some(&NEXT_HEADER_ICMPV6) {
        return None;
    }
    let d: [u8; 16] = quoted.get(24..40)?.try_into().ok()?;
    let request = quoted.get(40..)?;
    (request.first() == Some(&ECHO_REQUEST_V6)).then(|| (Ipv6Addr::from(d).into(), request))
}

/// What an ICMP error message means; `None` for other types.
pub fn icmp_error_text(v6: bool, ty: u8, code: u8) -> Option<String> {
    let text = match (v6, ty, code) {
        (false, 3, 0) | (true, 1, 0) => "network unreachable",
        (false, 3, 1) | (true, 1, 3) => "host unreachable",
        (false, 3, 3) | (true, 1, 4) => "port unreachable",
        (false, 3, 9 | 10 | 13) | (true, 1, 1) => "administratively prohibited",
        (false, 3, _) | (true, 1, _) => "destination unreachable",
        (true, 2, _) => "packet too big",
        (false, 11, _) | (true, 3, _) => "time exceeded",
        (false, 12, _) | (true, 4, _) => "parameter problem",
        _ => return None,
    };
    Some(format!("{text} (code {code})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A minimal IPv4 header (20 bytes) with protocol ICMP.
    fn ip_header(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, PROTO_ICMP, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    }

    #[test]
    fn a_request_checksums_to_zero() {
        let p = echo_request(false, 0x1234, 7, b"csm ping payload");
        assert_eq!(&p[..8], &[8, 0, p[2], p[3], 0x12, 0x34, 0, 7]);
        assert_eq!(checksum(&p), 0, "a correct checksum sums to zero");
        // Odd lengths pad with a zero byte.
        assert_eq!(checksum(&echo_request(false, 1, 2, b"odd")[..]), 0);
    }

    #[test]
    fn v6_requests_leave_the_checksum_to_the_kernel() {
        let p = echo_request(true, 1, 2, b"x");
        assert_eq!(&p[..8], &[128, 0, 0, 0, 0, 1, 0, 2]);
    }

    #[test]
    fn echo_reply_through_a_raw_socket() {
        let mut p = ip_header([10, 0, 0, 2], [10, 0, 0, 1]);
        p.extend_from_slice(&[0, 0, 0xab, 0xcd, 0x12, 0x34, 0, 9, 1, 2, 3]);
        let got = parse(&p, v4("10.0.0.2"), true).unwrap();
        assert_eq!(
            got,
            Incoming {
                dest: v4("10.0.0.2"),
                ident: 0x1234,
                seq: 9,
                error: None
            }
        );
        // The same message from a datagram socket has no IP header.
        assert_eq!(parse(&p[20..], v4("10.0.0.2"), false), Some(got));
    }

    #[test]
    fn our_own_requests_and_truncated_packets_are_ignored() {
        let req = echo_request(false, 1, 2, b"");
        assert_eq!(parse(&req, v4("127.0.0.1"), false), None);
        assert_eq!(parse(&[0, 0, 0], v4("127.0.0.1"), false), None);
        assert_eq!(parse(&[0x45, 0], v4("127.0.0.1"), true), None);
    }

    #[test]
    fn an_error_names_the_quoted_destination() {
        // Host unreachable from a router 10.0.0.254, quoting our echo to 192.0.2.7.
        let mut p = ip_header([10, 0, 0, 254], [10, 0, 0, 1]);
        p.extend_from_slice(&[3, 1, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&ip_header([10, 0, 0, 1], [192, 0, 2, 7]));
        p.extend_from_slice(&echo_request(false, 0x1234, 5, b"")[..8]);
        let got = parse(&p, v4("10.0.0.254"), true).unwrap();
        assert_eq!(got.dest, v4("192.0.2.7"));
        assert_eq!((got.ident, got.seq), (0x1234, 5));
        let error = got.error.unwrap();
        assert!(error.starts_with("host unreachable"), "{error}");
        assert!(error.contains("10.0.0.254"), "{error}");
    }

    #[test]
    fn an_icmpv6_error_names_the_quoted_destination() {
        let dest: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut inner = vec![0x60, 0, 0, 0, 0, 8, NEXT_HEADER_ICMPV6, 64];
        inner.extend_from_slice(&[0; 16]);
        inner.extend_from_slice(&dest.octets());
        inner.extend_from_slice(&echo_request(true, 3, 4, b"")[..8]);
        let mut p = vec![1, 3, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&inner);
        let got = parse(&p, "fe80::1".parse().unwrap(), false).unwrap();
        assert_eq!(got.dest, IpAddr::V6(dest));
        assert_eq!((got.ident, got.seq), (3, 4));
        assert!(got.error.unwrap().starts_with("host unreachable"));
    }

    #[test]
    fn icmpv6_echo_reply() {
        let p = [129, 0, 0, 0, 0, 3, 0, 4];
        let got = parse(&p, "::1".parse().unwrap(), false).unwrap();
        assert_eq!((got.ident, got.seq, got.error), (3, 4, None));
    }
}
