//! The snapshot file format, checksummed end to end.
//!
//! ```text
//! "ANSNAP2\n"                      8 bytes of magic
//! u32 LE header length, header     postcard: snapshot meta, state machine meta, item count
//! per item: u32 key len, key, u64 version, u32 value len, value
//! u32 LE crc32 of every byte before it
//! ```
//!
//! Every length is checked against a bound before anything is allocated,
//! the item count against the header, and the checksum before a snapshot
//! is used: a file with a flipped byte is refused, never installed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::types::SnapshotMeta;
use crate::engine::{EngineError, KeyValue, Meta, Stored};

const MAGIC: &[u8; 8] = b"ANSNAP2\n";

/// The largest header accepted (it holds two log ids and a membership).
pub const MAX_HEADER_BYTES: u32 = 1 << 20;

/// The largest key or value accepted: no item can be bigger than the Raft
/// message that wrote it.
pub const MAX_ITEM_BYTES: u32 = crate::grpc::raft_network::MAX_MESSAGE_BYTES as u32;

/// What a snapshot file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub snapshot: SnapshotMeta,
    pub state: Meta,
    pub items: u64,
}

fn damaged(what: impl std::fmt::Display) -> EngineError {
    EngineError(format!("damaged snapshot: {what}"))
}

fn io(doing: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::new(doing, e)
}

/// A reader that checksums what passes through it.
struct Summing<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for Summing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that checksums what passes through it.
pub struct SummingWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for SummingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a snapshot: `begin`, `item` for each item, then `finish`.
pub struct SnapshotWriter<W: Write = BufWriter<File>> {
    out: SummingWriter<W>,
}

impl SnapshotWriter {
    /// Starts a snapshot file in `file` with `header`.
    pub fn begin(file: File, header: &Header) -> Result<Self, EngineError> {
        Self::begin_on(BufWriter::new(file), header)
    }

    /// Writes the checksum and fsyncs the file.
    pub fn finish(self) -> Result<(), EngineError> {
        let file = self
            .finish_on()?
            .into_inner()
            .map_err(|e| EngineError::new("flush snapshot", e.error()))?;
        file.sync_all().map_err(io("fsync snapshot"))
    }
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot with `header` on any writer.
    pub fn begin_on(out: W, header: &Header) -> Result<Self, EngineError> {
        let mut out = SummingWriter {
            inner: out,
            crc: crc32fast::Hasher::new(),
        };
        let bytes = postcard::to_stdvec(header)
            .map_err(|e| EngineError::new("encode snapshot header", e))?;
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= MAX_HEADER_BYTES)
            .ok_or_else(|| EngineError(format!("snapshot header of {} bytes", bytes.len())))?;
        out.write_all(MAGIC).map_err(io("write snapshot"))?;
        out.write_all(&len.to_le_bytes())
            .map_err(io("write snapshot"))?;
        out.write_all(&bytes).map_err(io("write snapshot"))?;
        Ok(Self { out })
    }

    /// Appends one item.
    pub fn item(&mut self, (key, stored): &KeyValue) -> Result<(), EngineError> {
        let len = |n: usize| {
            u32::try_from(n)
                .ok()
                .filter(|l| *l <= MAX_ITEM_BYTES)
                .ok_or_else(|| EngineError(format!("snapshot item of {n} bytes")))
        };
        let out = &mut self.out;
        out.write_all(&len(key.len())?.to_le_bytes())
            .map_err(io("write snapshot"))?;
        out.write_all(key).map_err(io("write snapshot"))?;
        out.write_all(&stored.version.to_le_bytes())
            .map_err(io("write snapshot"))?;
        out.write_all(&len(stored.value.len())?.to_le_bytes())
            .map_err(io("write snapshot"))?;
        out.write_all(&stored.value).map_err(io("write snapshot"))
    }

    /// Writes the checksum; gives the writer back.
    pub fn finish_on(self) -> Result<W, EngineError> {
        let SummingWriter { mut inner, crc } = self.out;
        inner
            .write_all(&crc.finalize().to_le_bytes())
            .map_err(io("write snapshot"))?;
        Ok(inner)
    }
}

/// Reads a snapshot file front to back, checking as it goes.
pub struct SnapshotReader<R: Read = BufReader<File>> {
    input: Summing<R>,
    remaining: u64,
    done: bool,
}

fn read_array<const N: usize>(input: &mut impl Read) -> Result<[u8; N], EngineError> {
    let mut buf = [0; N];
    input
        .read_exact(&mut buf)
        .map_err(|e| damaged(format!("cut short ({e})")))?;
    Ok(buf)
}

fn read_bounded(input: &mut impl Read, bound: u32, what: &str) -> Result<Vec<u8>, EngineError> {
    let len = u32::from_le_bytes(read_array(input)?);
    if len > bound {
        return Err(damaged(format!("{what} length {len} exceeds {bound}")));
    }
    let mut bytes = vec![0; len as usize];
    input
        .read_exact(&mut bytes)
        .map_err(|e| damaged(format!("cut short ({e})")))?;
    Ok(bytes)
}

impl SnapshotReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<(Header, Self), EngineError> {
        let file = File::open(path).map_err(io("open snapshot"))?;
        Self::from_reader(BufReader::new(file))
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header of the snapshot `input` holds.
    pub fn from_reader(input: R) -> Result<(Header, Self), EngineError> {
        let mut input = Summing {
            inner: input,
            crc: crc32fast::Hasher::new(),
        };
        if &read_array::<8>(&mut input)? != MAGIC {
            return Err(damaged("not a snapshot of this format (bad magic)"));
        }
        let bytes = read_bounded(&mut input, MAX_HEADER_BYTES, "header")?;
        let header: Header =
            postcard::from_bytes(&bytes).map_err(|e| damaged(format!("header: {e}")))?;
        let reader = Self {
            input,
            remaining: header.items,
            done: false,
        };
        Ok((header, reader))
    }

    fn next_item(&mut self) -> Result<KeyValue, EngineError> {
        let key = read_bounded(&mut self.input, MAX_ITEM_BYTES, "key")?;
        let version = u64::from_le_bytes(read_array(&mut self.input)?);
        let value = read_bounded(&mut self.input, MAX_ITEM_BYTES, "value")?;
        Ok((key, Stored { version, value }))
    }

    /// After the last item: the checksum must match and the file must end.
    fn finish(&mut self) -> Result<(), EngineError> {
        let expected = std::mem::take(&mut self.input.crc).finalize();
        let stored = u32::from_le_bytes(read_array(&mut self.input.inner)?);
        if stored != expected {
            return Err(damaged(format!(
                "checksum {stored:#010x} does not match its contents ({expected:#010x})"
            )));
        }
        let mut probe = [0u8; 1];
        match self.input.inner.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(damaged("bytes after its checksum")),
            Err(e) => Err(EngineError::new("read snapshot", e)),
        }
    }
}

impl<R: Read> Iterator for SnapshotReader<R> {
    type Item = Result<KeyValue, EngineError>;

    /// Every item, then an error instead of the end if the checksum fails.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return self.finish().err().map(Err);
        }
        self.remaining -= 1;
        let result = self.next_item();
        self.done = result.is_err();
        Some(result)
    }
}

/// Reads the whole file and checks it; returns its header.
pub fn verify(path: &Path) -> Result<Header, EngineError> {
    let (header, reader) = SnapshotReader::open(path)?;
    for item in reader {
        item?;
    }
    Ok(header)
}

/// Only the header (to pick the newest file; `verify` before use).
pub fn read_header(path: &Path) -> Result<Header, EngineError> {
    SnapshotReader::open(path).map(|(header, _)| header)
}
