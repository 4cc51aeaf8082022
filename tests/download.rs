//! Downloads against a real HTTP server on 127.0.0.1 (in this process, bounded in
//! connections and time): resumed partial downloads, bad checksums, dead mirrors, no network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lightning::data::download::Downloader;

const FILE: &str = "train-labels-idx1-ubyte.gz";

fn content() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn md5_hex(b: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// Serves `/good/`, `/flaky/` (half the body, then the connection drops), `/bad/` (wrong
/// bytes) and anything else as 404. Records each request line with its Range header.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline && served < 100 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        handle(stream, &r);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { base, requests, stop, handle: Some(handle) }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn handle(mut stream: TcpStream, log: &Mutex<Vec<String>>) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
    }
    log.lock().unwrap().push(format!("{path} range={range:?}"));
    let body = content();
    let reply = |s: &mut TcpStream, status: &str, extra: &str, bytes: &[u8], send: usize| {
        let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", bytes.len());
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&bytes[..send]);
        let _ = s.flush();
    };
    if path.starts_with("/good/") {
        match range {
            Some(from) => {
                let rest = &body[from.min(body.len())..];
                let extra = format!("Content-Range: bytes {from}-{}/{}\r\n", body.len() - 1, body.len());
                reply(&mut stream, "206 Partial Content", &extra, rest, rest.len());
            }
            None => reply(&mut stream, "200 OK", "", &body, body.len()),
        }
    } else if path.starts_with("/flaky/") {
        reply(&mut stream, "200 OK", "", &body, body.len() / 2);
    } else if path.starts_with("/bad/") {
        let mut bad = body.clone();
        bad[10] ^= 0xff;
        reply(&mut stream, "200 OK", "", &bad, bad.len());
    } else {
        reply(&mut stream, "404 Not Found", "", b"", 0);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
}

/// A port with nothing listening.
fn dead_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn fetch(d: &Downloader, dir: &std::path::Path, mirrors: &[String]) -> lightning::Result<std::path::PathBuf> {
    d.fetch(dir, mirrors, FILE, &md5_hex(&content()))
}

#[test]
fn a_partial_download_resumes_on_the_next_mirror() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Downloader::new(dir.path()).timeout(Duration::from_secs(5));
    let mirrors = [format!("{}/flaky", server.base), format!("{}/good", server.base)];
    let path = fetch(&d, dir.path(), &mirrors).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), content());
    let half = content().len() / 2;
    assert_eq!(server.requests(), [format!("/flaky/{FILE} range=None"), format!("/good/{FILE} range=Some({half})")]);
    assert!(!dir.path().join(format!("{FILE}.part")).exists());
    // cached: a second fetch asks nobody
    fetch(&d, dir.path(), &mirrors).unwrap();
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_wrong_checksum_is_rejected_and_a_dead_mirror_is_skipped() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Downloader::new(dir.path()).timeout(Duration::from_secs(5));
    let e = fetch(&d, dir.path(), &[format!("{}/bad", server.base)]).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(!dir.path().join(FILE).exists() && !dir.path().join(format!("{FILE}.part")).exists());

    let mirrors = [dead_base(), format!("{}/missing", server.base), format!("{}/good", server.base)];
    let path = fetch(&d, dir.path(), &mirrors).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), content());
}

#[test]
fn without_network_the_error_says_how_to_work_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = Downloader::new(dir.path()).timeout(Duration::from_secs(2));
    let e = fetch(&d, dir.path(), &[dead_base(), dead_base()]).unwrap_err();
    assert!(matches!(e, lightning::Error::Download { ref attempts, .. } if attempts.len() == 2), "{e}");
    assert!(e.to_string().contains("--data-dir"), "{e}");
}
