//! The snapshot file format, checksummed end to end.
//!
//! ```text
//! "ANSNAP3\n"                      8 bytes of magic
//! one zstd frame of:
//!   u32 LE header length, header   postcard: snapshot meta, state machine meta, item count
//!   per item: u32 key len, key, u64 version, u32 value len, value
//! u32 LE crc32 of every byte of the file before it
//! ```
//!
//! The items are compressed because a snapshot is a second copy of the
//! whole state on every replica's disk, and the ledger's values are JSON:
//! zstd at its fastest level makes the file several times smaller
//! (docs/benchmarks.md, "Disk per replica"), and the same bytes go over
//! the wire when a follower installs it. Files of the previous format
//! (`ANSNAP2`: the same, uncompressed) are still read.
//!
//! Every length is checked against a bound before anything is allocated,
//! the item count against the header, and the checksum before a snapshot
//! is used: a file with a flipped byte is refused, never installed. The
//! checksum covers the file's own bytes, not what they decompress to, so
//! that this holds for every byte (a changed zstd window size, say, would
//! decompress to the same items).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::types::SnapshotMeta;
use crate::engine::{EngineError, KeyValue, Meta, Stored};

const MAGIC: &[u8; 8] = b"ANSNAP3\n";

/// The previous format: the same stream, uncompressed.
const MAGIC_UNCOMPRESSED: &[u8; 8] = b"ANSNAP2\n";

/// zstd's fastest level: on a deposit run's snapshot it compressed as well
/// as the default level 3 (15× against 14×) at 1.1 GB/s instead of 0.8,
/// and incompressible values pass at 1.3 GB/s.
const ZSTD_LEVEL: i32 = 1;

/// The largest zstd window accepted when reading (4 MiB): level 1 writes
/// at most 512 KiB, and a forged frame must not make the reader allocate
/// more than that.
const ZSTD_MAX_WINDOW_LOG: u32 = 22;

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

/// A buffered reader that checksums the bytes consumed from it — not
/// those it merely buffered ahead, which may be the checksum itself.
struct SummingReader<R> {
    inner: BufReader<R>,
    crc: crc32fast::Hasher,
}

impl<R: Read> BufRead for SummingReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.crc.update(&self.inner.buffer()[..amount]);
        self.inner.consume(amount);
    }
}

impl<R: Read> Read for SummingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A writer that checksums what passes through it.
struct SummingWriter<W> {
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

/// Counts the bytes passing through, uncompressed.
struct Counting<T> {
    inner: T,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The magic and the checksum around the stream, uncompressed.
const FRAMING_BYTES: u64 = 12;

/// Writes a snapshot: `begin`, `item` for each item, then `finish`.
pub struct SnapshotWriter<W: Write = BufWriter<File>> {
    out: Counting<zstd::Encoder<'static, SummingWriter<W>>>,
}

impl SnapshotWriter {
    /// Starts a snapshot file in `file` with `header`.
    pub fn begin(file: File, header: &Header) -> Result<Self, EngineError> {
        Self::begin_on(BufWriter::new(file), header)
    }

    /// Writes the checksum and fsyncs the file; returns the snapshot's
    /// uncompressed size ([`Checked::stream_bytes`]).
    pub fn finish(self) -> Result<u64, EngineError> {
        let bytes = self.stream_bytes();
        let file = self
            .finish_on()?
            .into_inner()
            .map_err(|e| EngineError::new("flush snapshot", e.error()))?;
        file.sync_all().map_err(io("fsync snapshot"))?;
        Ok(bytes)
    }
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot with `header` on any writer.
    pub fn begin_on(out: W, header: &Header) -> Result<Self, EngineError> {
        let mut out = SummingWriter {
            inner: out,
            crc: crc32fast::Hasher::new(),
        };
        out.write_all(MAGIC).map_err(io("write snapshot"))?;
        let encoder = zstd::Encoder::new(out, ZSTD_LEVEL).map_err(io("start compressing"))?;
        let mut out = Counting {
            inner: encoder,
            bytes: 0,
        };
        let bytes = postcard::to_stdvec(header)
            .map_err(|e| EngineError::new("encode snapshot header", e))?;
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= MAX_HEADER_BYTES)
            .ok_or_else(|| EngineError(format!("snapshot header of {} bytes", bytes.len())))?;
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

    /// The snapshot's size so far, uncompressed.
    pub fn stream_bytes(&self) -> u64 {
        self.out.bytes + FRAMING_BYTES
    }

    /// Ends the compressed frame and writes the checksum; gives the
    /// writer back.
    pub fn finish_on(self) -> Result<W, EngineError> {
        let SummingWriter { mut inner, crc } =
            self.out.inner.finish().map_err(io("write snapshot"))?;
        inner
            .write_all(&crc.finalize().to_le_bytes())
            .map_err(io("write snapshot"))?;
        Ok(inner)
    }
}

/// What follows the magic: the stream, compressed or (older files) not.
enum Body<R: Read> {
    Zstd(zstd::Decoder<'static, SummingReader<R>>),
    Plain(SummingReader<R>),
}

impl<R: Read> Body<R> {
    /// The stream after `input`'s magic.
    fn after_magic(mut input: SummingReader<R>) -> Result<Self, EngineError> {
        let magic: [u8; 8] = read_array(&mut input)?;
        let cannot_start = |e| damaged(format!("cannot start decompressing ({e})"));
        if &magic == MAGIC {
            let mut decoder = zstd::Decoder::with_buffer(input)
                .map_err(cannot_start)?
                .single_frame();
            decoder
                .window_log_max(ZSTD_MAX_WINDOW_LOG)
                .map_err(cannot_start)?;
            Ok(Self::Zstd(decoder))
        } else if &magic == MAGIC_UNCOMPRESSED {
            Ok(Self::Plain(input))
        } else {
            Err(damaged("not a snapshot of this format (bad magic)"))
        }
    }

    /// After the stream: the file's checksum, and nothing after it.
    fn check_the_end(&mut self) -> Result<(), EngineError> {
        let file = match self {
            Self::Zstd(decoder) => {
                // Reading on ends the frame (the decoder consumes its
                // epilogue); anything decompressed after it is extra.
                let mut probe = [0u8; 1];
                let extra = decoder
                    .read(&mut probe)
                    .map_err(|e| damaged(format!("cut short ({e})")))?;
                if extra > 0 {
                    return Err(damaged("bytes after its checksum"));
                }
                decoder.get_mut()
            }
            Self::Plain(input) => input,
        };
        let expected = std::mem::take(&mut file.crc).finalize();
        let stored = u32::from_le_bytes(read_array(&mut file.inner)?);
        if stored != expected {
            return Err(damaged(format!(
                "checksum {stored:#010x} does not match its contents ({expected:#010x})"
            )));
        }
        match file.inner.fill_buf() {
            Ok([]) => Ok(()),
            Ok(_) => Err(damaged("bytes after its checksum")),
            Err(e) => Err(EngineError::new("read snapshot", e)),
        }
    }
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Zstd(decoder) => decoder.read(buf),
            Self::Plain(input) => input.read(buf),
        }
    }
}

/// Reads a snapshot file front to back, checking as it goes.
pub struct SnapshotReader<R: Read = File> {
    input: Counting<Body<R>>,
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
        Self::from_reader(file)
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header of the snapshot `input` holds (buffered here).
    pub fn from_reader(input: R) -> Result<(Header, Self), EngineError> {
        let input = SummingReader {
            inner: BufReader::new(input),
            crc: crc32fast::Hasher::new(),
        };
        let mut input = Counting {
            inner: Body::after_magic(input)?,
            bytes: 0,
        };
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

    /// The snapshot's size read so far, uncompressed.
    fn stream_bytes(&self) -> u64 {
        self.input.bytes + FRAMING_BYTES
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
            return self.input.inner.check_the_end().err().map(Err);
        }
        self.remaining -= 1;
        let result = self.next_item();
        self.done = result.is_err();
        Some(result)
    }
}

/// A snapshot file read through and found intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub header: Header,
    /// Its size uncompressed: what the snapshot pacing weighs the bytes
    /// written since against (the file itself is several times smaller).
    pub stream_bytes: u64,
}

/// Reads the whole file and checks it.
pub fn verify(path: &Path) -> Result<Checked, EngineError> {
    let (header, mut reader) = SnapshotReader::open(path)?;
    for item in reader.by_ref() {
        item?;
    }
    Ok(Checked {
        header,
        stream_bytes: reader.stream_bytes(),
    })
}

/// Only the header (to pick the newest file; `verify` before use).
pub fn read_header(path: &Path) -> Result<Header, EngineError> {
    SnapshotReader::open(path).map(|(header, _)| header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(items: u64) -> Header {
        Header {
            snapshot: SnapshotMeta::default(),
            state: Meta {
                revision: 9,
                applied: vec![],
            },
            items,
        }
    }

    /// Items like the ledger's: JSON values under keys with a common prefix.
    fn ledger_like(n: u32) -> Vec<KeyValue> {
        (0..n)
            .map(|i| {
                let key = format!("entry\0acme/account-{:04}\0{i:08}", i % 100).into_bytes();
                let value = format!(
                    r#"{{"sequence":{i},"amount":"{}","balance_after":"{}","request_id":"dep-{i}","created_at":"2026-12-07T19:30:00.{i:06}Z"}}"#,
                    i % 977,
                    u64::from(i) * 31
                )
                .into_bytes();
                (
                    key,
                    Stored {
                        version: u64::from(i) + 1,
                        value,
                    },
                )
            })
            .collect()
    }

    fn written(header: &Header, items: &[KeyValue]) -> Vec<u8> {
        let mut out = SnapshotWriter::begin_on(Vec::new(), header).expect("begin");
        for item in items {
            out.item(item).expect("item");
        }
        out.finish_on().expect("finish")
    }

    fn read_back(bytes: &[u8]) -> Result<(Header, Vec<KeyValue>), EngineError> {
        let (header, reader) = SnapshotReader::from_reader(bytes)?;
        Ok((header, reader.collect::<Result<Vec<_>, _>>()?))
    }

    /// The uncompressed stream of a file of the current format.
    fn uncompressed_stream(file: &[u8]) -> Vec<u8> {
        zstd::decode_all(&file[8..file.len() - 4]).expect("one zstd frame after the magic")
    }

    #[test]
    fn ledger_values_take_a_fraction_of_their_size_on_disk() {
        let items = ledger_like(5_000);
        let raw: usize = items.iter().map(|(k, s)| k.len() + 8 + s.value.len()).sum();
        let file = written(&header(5_000), &items);
        assert!(
            file.len() * 4 < raw,
            "{} bytes on disk for {raw} bytes of items",
            file.len()
        );
        assert_eq!(read_back(&file).expect("reads"), (header(5_000), items));
    }

    #[test]
    fn the_size_the_pacing_sees_is_the_uncompressed_one_on_both_ends() {
        let items = ledger_like(1_000);
        let mut out = SnapshotWriter::begin_on(Vec::new(), &header(1_000)).expect("begin");
        for item in &items {
            out.item(item).expect("item");
        }
        let written_size = out.stream_bytes();
        let file = out.finish_on().expect("finish");
        let raw: usize = items
            .iter()
            .map(|(k, s)| k.len() + 16 + s.value.len())
            .sum();
        assert!(written_size > raw as u64, "{written_size} < {raw}");
        let (_, mut reader) = SnapshotReader::from_reader(&file[..]).expect("header");
        assert!(reader.by_ref().all(|item| item.is_ok()));
        assert_eq!(reader.stream_bytes(), written_size);
        assert!(file.len() as u64 * 4 < written_size);
    }

    #[test]
    fn a_file_of_the_uncompressed_format_still_reads() {
        let items = ledger_like(10);
        let body = uncompressed_stream(&written(&header(10), &items));
        let mut crc = crc32fast::Hasher::new();
        crc.update(MAGIC_UNCOMPRESSED);
        crc.update(&body);
        let mut old = MAGIC_UNCOMPRESSED.to_vec();
        old.extend_from_slice(&body);
        old.extend_from_slice(&crc.finalize().to_le_bytes());
        assert_eq!(read_back(&old).expect("reads"), (header(10), items));
        old[20] ^= 1;
        assert!(read_back(&old).is_err(), "a damaged old file reads");
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut forged = MAGIC.to_vec();
        forged.extend(zstd::encode_all(&u32::MAX.to_le_bytes()[..], ZSTD_LEVEL).expect("compress"));
        forged.extend(crc32fast::hash(&forged).to_le_bytes());
        let err = read_back(&forged).expect_err("refused");
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn bytes_after_the_compressed_frame_are_refused() {
        let mut file = written(&header(3), &ledger_like(3));
        assert!(read_back(&file).is_ok());
        file.push(0);
        let err = read_back(&file).expect_err("refused");
        assert!(err.to_string().contains("after its checksum"), "{err}");
    }
}
