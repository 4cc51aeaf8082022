//! How the ranks of a torchrun-style job get one small blob from rank 0 before they can talk:
//! NCCL's 128-byte unique id, which `ncclCommInitRank` needs on every rank. Through a TCP
//! socket on `MASTER_ADDR:MASTER_PORT` (any number of nodes) or a file (one node: what
//! `devices(N)` uses). Only this bootstrap is ours; the collective operations are NCCL's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Where rank 0 publishes and the other ranks fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendezvous {
    /// A file every rank can read: one node, or a shared file system. Rank 0 writes it
    /// whole (a temporary file renamed), so a reader never sees half of it.
    File(PathBuf),
    /// `host:port` of rank 0, which listens there until every rank has fetched.
    Tcp(String),
}

const MAGIC: &[u8; 8] = b"LTNGRDV1";
/// The most a rendezvous carries (an NCCL id is 128 bytes).
const MAX_PAYLOAD: u32 = 1 << 16;

impl Rendezvous {
    /// `file:PATH` or `tcp:HOST:PORT` (the form of `LIGHTNING_RENDEZVOUS`).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::LaunchEnv {
            var: super::env::RENDEZVOUS_VAR,
            value: spec.to_string(),
            reason: reason.to_string(),
        };
        match spec.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(Rendezvous::File(path.into())),
            Some(("tcp", addr)) => match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Rendezvous::Tcp(addr.into()))
                }
                _ => Err(bad("a TCP rendezvous is `tcp:HOST:PORT`")),
            },
            _ => Err(bad("expected `file:PATH` or `tcp:HOST:PORT`")),
        }
    }

    fn at(&self) -> String {
        match self {
            Rendezvous::File(p) => p.display().to_string(),
            Rendezvous::Tcp(a) => format!("tcp://{a}"),
        }
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Rendezvous { at: self.at(), reason: reason.into() }
    }

    /// Rank 0: makes `payload` available to ranks `1..world`. A TCP rendezvous returns once
    /// all of them fetched it, or fails after `timeout` naming the ranks that never came.
    pub fn publish(&self, world: usize, payload: &[u8], timeout: Duration) -> Result<()> {
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(self.error(format!("{} bytes is more than a rendezvous carries", payload.len())));
        }
        match self {
            Rendezvous::File(path) => {
                if path.exists() {
                    return Err(
                        self.error("already exists, left by an earlier job: remove it, or give each job its own path")
                    );
                }
                let mut bytes = MAGIC.to_vec();
                bytes.extend((world as u32).to_le_bytes());
                bytes.extend((payload.len() as u32).to_le_bytes());
                bytes.extend(payload);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
                std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
            }
            Rendezvous::Tcp(addr) => self.serve(addr, world, payload, timeout),
        }
    }

    fn serve(&self, addr: &str, world: usize, payload: &[u8], timeout: Duration) -> Result<()> {
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| self.error("expected HOST:PORT"))?;
        // rank 0 is MASTER_ADDR: listen on every interface, as torch's store does, unless
        // the job is local
        let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
        let bind = if loopback { addr.to_string() } else { format!("0.0.0.0:{port}") };
        let listener =
            TcpListener::bind(&bind).map_err(|e| self.error(format!("rank 0 cannot listen on {bind}: {e}")))?;
        listener.set_nonblocking(true).map_err(|e| self.error(e.to_string()))?;
        let mut missing: Vec<usize> = (1..world).collect();
        let deadline = Instant::now() + timeout;
        while !missing.is_empty() {
            match listener.accept() {
                Ok((stream, _)) => {
                    // a stray or broken connection is not a rank: keep waiting
                    if let Ok(rank) = self.answer(stream, world, payload, &missing) {
                        missing.retain(|&r| r != rank);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let list = missing.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
                        return Err(self.error(format!(
                            "rank(s) {list} of {world} did not arrive within {} s: check that they started, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE",
                            timeout.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(self.error(format!("accepting a rank: {e}"))),
            }
        }
        Ok(())
    }

    /// Reads one rank's hello and answers with the payload, or with why it can't have it.
    fn answer(&self, mut stream: TcpStream, world: usize, payload: &[u8], missing: &[usize]) -> std::io::Result<usize> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut hello = [0u8; 16];
        stream.read_exact(&mut hello)?;
        if &hello[..8] != MAGIC {
            return Err(std::io::Error::other("not a rank"));
        }
        let rank = u32::from_le_bytes(hello[8..12].try_into().unwrap()) as usize;
        let their_world = u32::from_le_bytes(hello[12..16].try_into().unwrap()) as usize;
        let refusal = if their_world != world {
            Some(format!("rank 0 has WORLD_SIZE={world}, rank {rank} has {their_world}"))
        } else if !missing.contains(&rank) {
            Some(format!("rank {rank} arrived twice, or is not in 1..{world}: check RANK on every process"))
        } else {
            None
        };
        let mut reply = Vec::with_capacity(5 + payload.len());
        match &refusal {
            Some(why) => {
                reply.push(1);
                reply.extend((why.len() as u32).to_le_bytes());
                reply.extend(why.as_bytes());
            }
            None => {
                reply.push(0);
                reply.extend((payload.len() as u32).to_le_bytes());
                reply.extend(payload);
            }
        }
        stream.write_all(&reply)?;
        match refusal {
            Some(why) => Err(std::io::Error::other(why)),
            None => Ok(rank),
        }
    }

    /// Ranks `1..world`: waits up to `timeout` for rank 0's payload.
    pub fn fetch(&self, rank: usize, world: usize, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        match self {
            Rendezvous::File(path) => loop {
                match std::fs::read(path) {
                    Ok(bytes) => return self.parse_file(&bytes, world),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(self.error(format!(
                            "rank 0 did not write it within {} s: check that rank 0 started and uses the same path",
                            timeout.as_secs()
                        )))
                    }
                    Err(e) => return Err(Error::io(path, e)),
                }
            },
            Rendezvous::Tcp(addr) => {
                let mut stream = loop {
                    match TcpStream::connect(addr) {
                        Ok(s) => break s,
                        Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                        Err(e) => {
                            return Err(self.error(format!(
                                "rank {rank}: rank 0 did not listen within {} s ({e}): check that it started and that MASTER_ADDR/MASTER_PORT are the same on every rank",
                                timeout.as_secs()
                            )))
                        }
                    }
                };
                let io = |e: std::io::Error| self.error(format!("rank {rank}: the exchange with rank 0 broke: {e}"));
                stream
                    .set_read_timeout(Some(
                        deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100)),
                    ))
                    .map_err(io)?;
                let mut hello = MAGIC.to_vec();
                hello.extend((rank as u32).to_le_bytes());
                hello.extend((world as u32).to_le_bytes());
                stream.write_all(&hello).map_err(io)?;
                let mut head = [0u8; 5];
                stream.read_exact(&mut head).map_err(io)?;
                let len = u32::from_le_bytes(head[1..5].try_into().unwrap());
                if len > MAX_PAYLOAD {
                    return Err(
                        self.error(format!("rank {rank}: rank 0 announced {len} bytes: not a rendezvous answer"))
                    );
                }
                let mut body = vec![0u8; len as usize];
                stream.read_exact(&mut body).map_err(io)?;
                if head[0] != 0 {
                    return Err(self.error(format!("rank 0 refused rank {rank}: {}", String::from_utf8_lossy(&body))));
                }
                Ok(body)
            }
        }
    }

    fn parse_file(&self, bytes: &[u8], world: usize) -> Result<Vec<u8>> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(self.error("not a rendezvous file"));
        }
        let their_world = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        if their_world != world {
            return Err(self.error(format!(
                "written for {their_world} ranks, this job has {world}: a stale file from another job?"
            )));
        }
        if bytes.len() != 16 + len {
            return Err(self.error("truncated"));
        }
        Ok(bytes[16..].to_vec())
    }

    /// Rank 0, once every rank is connected (NCCL's init returned): removes the file.
    pub fn finish(&self) {
        if let Rendezvous::File(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// Rank 0 and ranks `1..world` as threads; what every rank ends with.
    fn exchange(r: &Rendezvous, world: usize, payload: &[u8]) -> Vec<Result<Vec<u8>>> {
        std::thread::scope(|s| {
            let others: Vec<_> =
                (1..world).map(|rank| s.spawn(move || r.fetch(rank, world, Duration::from_secs(20)))).collect();
            let zero = r.publish(world, payload, Duration::from_secs(20)).map(|()| payload.to_vec());
            std::iter::once(zero).chain(others.into_iter().map(|h| h.join().unwrap())).collect()
        })
    }

    #[test]
    fn tcp_on_loopback_reaches_every_rank() {
        let r = Rendezvous::parse(&format!("tcp:127.0.0.1:{}", free_port())).unwrap();
        let id: Vec<u8> = (0..128).collect();
        for got in exchange(&r, 4, &id) {
            assert_eq!(got.unwrap(), id);
        }
    }

    #[test]
    fn a_file_reaches_every_rank_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let r = Rendezvous::File(dir.path().join("id"));
        for got in exchange(&r, 3, b"nccl-id") {
            assert_eq!(got.unwrap(), b"nccl-id");
        }
        // a second job on the same path is refused while the file stays
        assert!(r.publish(3, b"x", Duration::from_secs(1)).unwrap_err().to_string().contains("earlier job"));
        r.finish();
        assert!(!dir.path().join("id").exists());
    }

    #[test]
    fn a_missing_rank_is_named_after_the_timeout() {
        let r = Rendezvous::Tcp(format!("127.0.0.1:{}", free_port()));
        let err = std::thread::scope(|s| {
            // ranks 1 and 3 come; rank 2 of 4 never does
            for rank in [1, 3] {
                let r = &r;
                s.spawn(move || r.fetch(rank, 4, Duration::from_secs(20)).unwrap());
            }
            r.publish(4, b"id", Duration::from_secs(2)).unwrap_err().to_string()
        });
        assert!(err.contains("rank(s) 2 of 4 did not arrive within 2 s"), "{err}");
    }

    #[test]
    fn disagreeing_ranks_are_refused_with_the_reason() {
        let r = Rendezvous::Tcp(format!("127.0.0.1:{}", free_port()));
        std::thread::scope(|s| {
            let zero = s.spawn(|| r.publish(2, b"id", Duration::from_secs(3)));
            let err = r.fetch(1, 3, Duration::from_secs(10)).unwrap_err().to_string();
            assert!(err.contains("rank 0 has WORLD_SIZE=2, rank 1 has 3"), "{err}");
            assert!(zero.join().unwrap().is_err(), "rank 1 never fetched for a world of 2");
        });
        // nobody listening: a bounded wait that says what to check
        let err = r.fetch(1, 2, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(err.contains("rank 0 did not listen"), "{err}");
        let file = Rendezvous::File(std::env::temp_dir().join(format!("lightning-none-{}", std::process::id())));
        assert!(file.fetch(1, 2, Duration::from_millis(100)).unwrap_err().to_string().contains("did not write it"));
    }

    #[test]
    fn specs_parse_or_say_the_form() {
        assert_eq!(Rendezvous::parse("tcp:[::1]:29500").unwrap(), Rendezvous::Tcp("[::1]:29500".into()));
        for bad in ["tcp:host", "tcp::1", "udp:h:1", "file:", "nothing"] {
            assert!(Rendezvous::parse(bad).is_err(), "{bad}");
        }
    }
}
