//! The IDX file format of MNIST and Fashion-MNIST (optionally gzipped).

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The array's shape, from the header (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Refuse arrays over 4 GiB: no MNIST-like file is near that, a corrupt header may be.
const MAX_BYTES: usize = 1 << 32;

/// Reads an IDX file; gzip is detected from the content, not the name.
///
/// The data is read straight into its final buffer: the peak memory is the array itself
/// (plus the compressed file's read buffer for gzip), never the file's bytes beside a copy.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let io = |e| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut file, &mut magic).map_err(io)?;
    std::io::Seek::rewind(&mut file).map_err(io)?;
    if got == 2 && magic == GZIP_MAGIC {
        // deflate expands at most ~1032:1, so the stream's size bounds the first allocation
        let cap = usize::try_from(size.saturating_mul(1032)).unwrap_or(usize::MAX);
        return parse_gzip(std::io::BufReader::new(file), path, cap);
    }
    let mut header = vec![0u8; 4];
    let got = read_up_to(&mut file, &mut header).map_err(io)?;
    header.truncate(got);
    if got == 4 {
        header.resize(4 + 4 * header[3] as usize, 0);
        let more = read_up_to(&mut file, &mut header[4..]).map_err(io)?;
        header.truncate(4 + more);
    }
    match check_header(&header, path)? {
        Header::Complete { dims, expected } => {
            check_body(&dims, expected, (size as usize).saturating_sub(header.len()), path)?;
            let mut data = vec![0u8; expected];
            std::io::Read::read_exact(&mut file, &mut data).map_err(io)?;
            Ok(IdxArray { dims, data })
        }
        Header::Short => parse_plain(&header, path),
    }
}

/// Parses IDX bytes (gzipped or not); `origin` names the source in errors.
///
/// A gzipped file is inflated only as far as its header says it holds, plus one byte to
/// notice trailing data, so a corrupt header or a gzip bomb cannot make it allocate more
/// than the declared array (itself capped at 4 GiB).
pub fn parse_idx(bytes: &[u8], origin: &Path) -> Result<IdxArray> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return parse_gzip(bytes, origin, bytes.len().saturating_mul(1032));
    }
    parse_plain(bytes, origin)
}

/// A gzipped IDX stream; `cap` bounds the body buffer's first allocation.
fn parse_gzip(stream: impl Read, origin: &Path, cap: usize) -> Result<IdxArray> {
    let mut gz = flate2::read::GzDecoder::new(stream);
    let gz_err = |e: std::io::Error| Error::bad_file(origin, format!("not a valid gzip stream: {e}"));
    let mut head = [0u8; 4];
    let got = read_up_to(&mut gz, &mut head).map_err(gz_err)?;
    let ndims = if got == 4 { head[3] as usize } else { 0 };
    let mut header = head[..got].to_vec();
    let mut dims = vec![0u8; 4 * ndims];
    let got = read_up_to(&mut gz, &mut dims).map_err(gz_err)?;
    header.extend_from_slice(&dims[..got]);
    match check_header(&header, origin)? {
        Header::Complete { dims, expected } => {
            // read at most one byte more than declared (to see trailing bytes); the buffer
            // starts at the declared size only as far as the stream could hold it, so a
            // header's false claim cannot make it allocate more
            let mut body = Vec::with_capacity(expected.min(cap));
            (&mut gz).take(expected as u64 + 1).read_to_end(&mut body).map_err(gz_err)?;
            check_body(&dims, expected, body.len(), origin)?;
            Ok(IdxArray { dims, data: body })
        }
        // parse_plain reports the truncated header
        Header::Short => parse_plain(&header, origin),
    }
}

/// The data must be exactly as long as the dimensions say.
fn check_body(dims: &[usize], expected: usize, found: usize, origin: &Path) -> Result<()> {
    if found != expected {
        let what = if found < expected { "truncated" } else { "trailing bytes" };
        return Err(Error::bad_file(
            origin,
            format!("{what}: dimensions {dims:?} need {expected} data bytes, file has {found}"),
        ));
    }
    Ok(())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub(crate) enum Header {
    Complete { dims: Vec<usize>, expected: usize },
    Short,
}

pub(crate) fn check_header(bytes: &[u8], origin: &Path) -> Result<Header> {
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
        return Ok(Header::Short);
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_BYTES)
        .ok_or_else(|| Error::bad_file(origin, format!("IDX dimensions {dims:?} are implausibly large")))?;
    Ok(Header::Complete { dims, expected })
}

fn parse_plain(bytes: &[u8], origin: &Path) -> Result<IdxArray> {
    let (dims, expected) = match check_header(bytes, origin)? {
        Header::Complete { dims, expected } => (dims, expected),
        Header::Short => {
            let ndims = bytes[3] as usize;
            let need = 4 + 4 * ndims;
            return Err(Error::bad_file(
                origin,
                format!("truncated IDX header: {ndims} dimensions need {need} bytes, file has {}", bytes.len()),
            ));
        }
    };
    let header = 4 + 4 * dims.len();
    check_body(&dims, expected, bytes.len() - header, origin)?;
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

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_not_inflated_past_its_header() {
        // 64 MiB of zeros compresses to ~64 KiB; the header declares 4 bytes
        let mut raw = vec![0, 0, 8, 1, 0, 0, 0, 4];
        raw.resize(64 << 20, 0);
        let e = parse_idx(&gzip(&raw), p()).unwrap_err().to_string();
        assert!(e.contains("trailing bytes") && e.contains("need 4 data bytes, file has 5"), "{e}");
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
            (gzip(&[0, 0, 8, 1, 0, 0, 0, 2, 7]), "truncated"),
            (gzip(&[0, 0, 8, 1, 0, 0, 0, 1, 7, 7]), "trailing bytes"),
            (gzip(&[0, 0, 8, 2, 0, 0]), "truncated IDX header"),
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

#[cfg(test)]
mod fuzz {
    //! Property tests of the parser, bounded so CI runs them every time: any input is `Ok`
    //! or a typed error, never a panic; valid files round-trip, plain and gzipped.
    use proptest::prelude::*;

    use super::*;

    fn origin() -> &'static Path {
        Path::new("fuzz.idx")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_idx(&bytes, origin());
        }

        #[test]
        fn headers_with_any_dimensions_never_panic(ndims in 0u8..6, dims in proptest::collection::vec(any::<u32>(), 0..6), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut bytes = vec![0, 0, 8, ndims];
            for d in dims { bytes.extend_from_slice(&d.to_be_bytes()); }
            bytes.extend_from_slice(&tail);
            let _ = parse_idx(&bytes, origin());
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &bytes).unwrap();
            let _ = parse_idx(&gz.finish().unwrap(), origin());
        }

        #[test]
        fn corrupted_gzip_never_panics(flip in 0usize..200, bit in 0u8..8) {
            let a = IdxArray { dims: vec![3, 4], data: (0..12).collect() };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &encode_idx(&a)).unwrap();
            let mut bytes = gz.finish().unwrap();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(b) = parse_idx(&bytes, origin()) {
                prop_assert_eq!(b.data.len(), b.dims.iter().product::<usize>());
            }
        }

        #[test]
        fn valid_arrays_round_trip(dims in proptest::collection::vec(1usize..5, 1..4), seed in any::<u8>()) {
            let n: usize = dims.iter().product();
            let a = IdxArray { dims, data: (0..n).map(|i| (i as u8).wrapping_add(seed)).collect() };
            prop_assert_eq!(parse_idx(&encode_idx(&a), origin()).unwrap(), a);
        }
    }
}
