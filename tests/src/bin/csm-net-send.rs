//! Test helper: connects to ADDR, sends BYTES bytes, then reads until the peer closes.
//! Run as a test user (the tests set its uid) so its traffic is charged to that user.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(Ok(bytes))) = (args.get(1), args.get(2).map(|b| b.parse::<usize>()))
    else {
        eprintln!("usage: csm-net-send ADDR BYTES");
        return ExitCode::from(2);
    };
    match send(addr, bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("csm-net-send {addr}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn send(addr: &str, mut bytes: usize) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    let chunk = vec![0x5au8; 64 * 1024];
    while bytes > 0 {
        let n = bytes.min(chunk.len());
        stream.write_all(&chunk[..n])?;
        bytes -= n;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink)?;
    Ok(())
}
