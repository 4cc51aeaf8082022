//! Downloading MNIST-format data sets into a cache: several mirrors, MD5 checks, resumed
//! partial downloads, atomic writes, and an error that says how to work offline.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::{Error, Result};

/// A data set's four IDX files with their published MD5s, and where to get them.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    /// The data set's name, its directory in the cache (`mnist`).
    pub name: &'static str,
    /// `(file, md5)` in `mnist::FILES` order, gzipped.
    pub files: [(&'static str, &'static str); 4],
    /// Base URLs to try in order; a file's URL is the base, `/`, and its name.
    pub mirrors: &'static [&'static str],
}

/// MNIST, with torchvision's checksums and mirrors.
pub const MNIST: Remote = Remote {
    name: "mnist",
    files: [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    mirrors: &["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
};

/// Fashion-MNIST, with Zalando's published checksums.
pub const FASHION_MNIST: Remote = Remote {
    name: "fashion-mnist",
    files: [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    mirrors: &[
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
};

/// Downloads files into a cache directory.
#[derive(Debug, Clone)]
pub struct Downloader {
    cache_dir: PathBuf,
    mirrors: Option<Vec<String>>,
    timeout: Duration,
}

/// `$XDG_CACHE_HOME/candle-lightning`, else `~/.cache/candle-lightning`, else a temporary dir.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("candle-lightning")
}

fn md5_of(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl Default for Downloader {
    fn default() -> Self {
        Downloader { cache_dir: default_cache_dir(), mirrors: None, timeout: Duration::from_secs(30) }
    }
}

impl Downloader {
    /// Files go to `cache_dir/<data set>/`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Downloader { cache_dir: cache_dir.into(), ..Downloader::default() }
    }

    /// Replaces the data sets' own mirrors (base URLs, tried in order).
    pub fn mirrors(mut self, mirrors: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.mirrors = Some(mirrors.into_iter().map(Into::into).collect());
        self
    }

    /// Connect and read time-out for each request.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Makes sure all files of `remote` are in the cache, downloading what is missing;
    /// returns the directory, ready for `mnist::load_dir`.
    pub fn fetch_all(&self, remote: &Remote) -> Result<PathBuf> {
        let dir = self.cache_dir.join(remote.name);
        let default: Vec<String> = remote.mirrors.iter().map(|m| m.to_string()).collect();
        let mirrors = self.mirrors.as_ref().unwrap_or(&default);
        for (file, md5) in remote.files {
            self.fetch(&dir, mirrors, file, md5)?;
        }
        Ok(dir)
    }

    /// One file: already cached and intact, or downloaded from the first mirror that works.
    /// A partial download is kept as `<file>.part` and resumed (HTTP `Range`) by the next try.
    pub fn fetch(&self, dir: &Path, mirrors: &[String], file: &str, md5: &str) -> Result<PathBuf> {
        let dest = dir.join(file);
        if dest.is_file() && md5_of(&dest).map_err(|e| Error::io(&dest, e))? == md5 {
            return Ok(dest);
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let part = dir.join(format!("{file}.part"));
        let agent = ureq::AgentBuilder::new().timeout_connect(self.timeout).timeout_read(self.timeout).build();
        let mut attempts = Vec::new();
        for mirror in mirrors {
            let url = format!("{}/{file}", mirror.trim_end_matches('/'));
            match self.download(&agent, &url, &part) {
                Err(e) => attempts.push(format!("{url}: {e}")),
                Ok(()) => {
                    let got = md5_of(&part).map_err(|e| Error::io(&part, e))?;
                    if got == md5 {
                        std::fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
                        if let Ok(d) = File::open(dir) {
                            let _ = d.sync_all();
                        }
                        return Ok(dest);
                    }
                    attempts.push(format!("{url}: checksum mismatch (MD5 {got}, expected {md5})"));
                    let _ = std::fs::remove_file(&part);
                }
            }
        }
        Err(Error::Download { file: file.to_string(), attempts })
    }

    /// Appends the rest of `url` to `part` (all of it when the server ignores `Range`).
    fn download(&self, agent: &ureq::Agent, url: &str, part: &Path) -> std::result::Result<(), String> {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = agent.get(url);
        if have > 0 {
            req = req.set("Range", &format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            // asked for bytes past the end: the partial file is already whole
            Err(ureq::Error::Status(416, _)) if have > 0 => return Ok(()),
            Err(ureq::Error::Status(code, r)) => return Err(format!("HTTP {code} {}", r.status_text())),
            Err(e) => return Err(e.to_string()),
        };
        let resume = resp.status() == 206;
        let mut out = if resume { OpenOptions::new().append(true).open(part) } else { File::create(part) }
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let mut body = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| format!("connection lost after a partial download ({e}); it resumes next time"))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", part.display()))?;
        }
        out.sync_all().map_err(|e| format!("{}: {e}", part.display()))
    }
}
