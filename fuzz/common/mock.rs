//! Shared by the targets that drive the real async code: a stream whose reads return the
//! fuzz input in chunks of input-chosen sizes (a peer that sends in odd pieces) and whose
//! writes are swallowed, a fixed clock, and one runtime for all runs.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Debug)]
pub struct Peer {
    data: Vec<u8>,
    pos: usize,
    /// Largest read size (1..=256); a read returns 1..=chunk bytes, varying with the data.
    chunk: usize,
    pub written: Vec<u8>,
}

/// The fuzz input's first byte as the peer's chunk seed, the rest as what it sends.
pub fn chunk_and_data(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((c, rest)) => (*c, rest),
        None => (0, data),
    }
}

impl Peer {
    pub fn new(data: &[u8], chunk_seed: u8) -> Peer {
        Peer {
            data: data.to_vec(),
            pos: 0,
            chunk: usize::from(chunk_seed) + 1,
            written: Vec::new(),
        }
    }
}

impl AsyncRead for Peer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.data.len() - self.pos;
        // Vary the piece size with the byte at the cursor so that one input exercises
        // several splits.
        let vary = self.data.get(self.pos).map_or(0, |b| usize::from(*b) % self.chunk);
        let n = left.min(buf.remaining()).min(self.chunk - vary).max(left.min(1));
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.written.len() < 64 * 1024 {
            self.written.extend_from_slice(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug)]
pub struct FixedClock;

impl sdwdate::clock::Clock for FixedClock {
    fn now(&self) -> f64 {
        1_795_636_209.0
    }
    fn step(&self, _offset: f64) -> Result<(), sdwdate::clock::ClockError> {
        Ok(())
    }
    fn nudge(&self, _ns: i64) -> Result<(), sdwdate::clock::ClockError> {
        Ok(())
    }
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

pub const ONION: &str = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion";

pub fn source() -> sdwdate::config::Source {
    sdwdate::config::Source::parse_url(&format!("http://{ONION}/"), "fuzz").expect("source")
}
