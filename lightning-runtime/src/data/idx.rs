//! The IDX file format of MNIST and Fashion-MNIST (optionally gzipped).

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Refuse arrays over 4 GiB: no MNIST-like file is near that, a corrupt header may be.
const MAX_BYTES: usize = 1 << 32;

/// Reads an IDX file; gzip is detected from the content, not the name.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx(&bytes, path)
}

/// Parses IDX bytes (gzipped or not); `origin` names the source in errors.
pub fn parse_idx(bytes: &[u8], origin: &Path) -> Result<IdxArray> {
    let raw;
    let bytes = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::bad_file(origin, format!("not a valid gzip stream: {e}")))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 {
        return Err(Error::bad_file(origin, format!("too short for an IDX header ({} bytes)", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::bad_file(origin, "not an IDX file (the first two bytes must be zero)"));
    }
    if bytes[2] != 0x08 {
        return Err(Error::bad_file(
            origin,
            format!("IDX element type 0x{:02x} is not supported (only 0x08, unsigned bytes)", bytes[2]),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(Error::bad_file(origin, "IDX header declares zero dimensions"));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(Error::bad_file(
            origin,
            format!("truncated IDX header: {ndims} dimensions need {header} bytes, file has {}", bytes.len()),
        ));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_BYTES)
        .ok_or_else(|| Error::bad_file(origin, format!("IDX dimensions {dims:?} are implausibly large")))?;
    let found = bytes.len() - header;
    if found != expected {
        let what = if found < expected { "truncated" } else { "trailing bytes" };
        return Err(Error::bad_file(
            origin,
            format!("{what}: dimensions {dims:?} need {expected} data bytes, file has {found}"),
        ));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Encodes an array as IDX bytes (uncompressed).
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, array.dims.len() as u8];
    for d in &array.dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        let a = IdxArray { dims: vec![2, 3], data: vec![1, 2, 3, 4, 5, 6] };
        let bytes = encode_idx(&a);
        assert_eq!(parse_idx(&bytes, p()).unwrap(), a);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        assert_eq!(parse_idx(&gz.finish().unwrap(), p()).unwrap(), a);
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let a = IdxArray { dims: vec![2, 3], data: vec![0; 6] };
        let good = encode_idx(&a);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0], "too short"),
            (vec![1, 0, 8, 1, 0, 0, 0, 0], "not an IDX file"),
            (vec![0, 0, 0x0d, 1, 0, 0, 0, 0], "not supported"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            ([good.clone(), vec![9]].concat(), "trailing bytes"),
            (good[..9].to_vec(), "truncated IDX header"),
            (vec![0x1f, 0x8b, 1, 2, 3], "gzip"),
            (
                vec![0, 0, 8, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255],
                "implausibly large",
            ),
        ];
        for (bytes, want) in cases {
            let e = parse_idx(&bytes, p()).unwrap_err();
            assert!(matches!(e, Error::BadFile { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(want) && msg.starts_with("x.idx"), "{msg} should mention {want}");
        }
    }
}
