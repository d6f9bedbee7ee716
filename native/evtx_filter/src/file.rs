//! An EVTX file's chunks as `collectors.logs.evtx` reads them: the file checked once
//! (signature, truncation, every chunk's CRC32s, which the parser does not check), the
//! damaged chunks reported and left out, and the others handed over in order, numbered
//! as the parser numbers them in the copy without the damaged chunks that the Python
//! reader makes (`_checked_open`, `_without_damaged_chunks`, `_chunk_damage`). Here each
//! file is read once and its checksums summed by crc32fast: the Python checks were ~4 %
//! of a hunt's CPU time (zlib's CRC32 over every byte, a second read of every file).

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

use evtx::err::{ChunkError, EvtxError};
use evtx::{EvtxChunkData, EvtxFileHeader};

const FILE_HEADER: u64 = 4096;
const CHUNK: usize = 65536;
// a larger file is read chunk by chunk twice (the check, then the records) instead of
// being held in memory whole
const IN_MEMORY: u64 = 64 << 20;

/// What a file's check found: (reason, chunk number or None for the file, records).
pub type Damage = Vec<(String, Option<u64>, u64)>;

/// Why a file cannot be read at all.
pub enum OpenError {
    Io(io::Error),
    Format(String), // the whole message after the path
}

enum Source {
    Memory(Vec<u8>),
    File(File, Vec<u8>), // the file, and the buffer its chunks are read into
}

impl Source {
    /// The bytes at `offset`, a chunk's length or fewer at the end of the file.
    fn at(&mut self, offset: u64) -> io::Result<&[u8]> {
        match self {
            Source::Memory(data) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
                Ok(&data[start..(start + CHUNK.min(data.len() - start))])
            }
            Source::File(file, buf) => {
                file.seek(SeekFrom::Start(offset))?;
                buf.clear();
                file.take(CHUNK as u64).read_to_end(buf)?;
                Ok(&buf[..])
            }
        }
    }
}

pub struct Chunks {
    source: Source,
    damaged: Vec<u64>, // physical chunk numbers left out, ascending
    next: u64,         // the next physical chunk
    skipped: usize,    // damaged chunks before `next`
    count: u64,        // the parser's chunk count of the copy without the damaged chunks
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (what failed, records in the chunk) when a chunk's CRC32s do not match its bytes.
fn chunk_damage(chunk: &[u8]) -> Option<(&'static str, u64)> {
    if &chunk[..8] != b"ElfChnk\x00" {
        return None; // not a chunk at all: the parser reports that itself
    }
    let (first, last) = (u64_at(chunk, 8), u64_at(chunk, 16));
    let free = u32_at(chunk, 48) as usize;
    let mut h = crc32fast::Hasher::new();
    h.update(&chunk[..120]);
    h.update(&chunk[128..512]);
    let header_ok = h.finalize() == u32_at(chunk, 124);
    if header_ok && (512..=CHUNK).contains(&free)
        && crc32fast::hash(&chunk[512..free]) == u32_at(chunk, 52)
    {
        return None;
    }
    if header_ok && first <= last && last - first < (CHUNK / 24) as u64 {
        Some(("records checksum", last - first + 1))
    } else {
        Some(("header checksum", walk_records(chunk)))
    }
}

/// Records in a chunk found by their own framing (signature, size, size copy).
fn walk_records(chunk: &[u8]) -> u64 {
    let (mut n, mut at) = (0, 512usize);
    while at + 28 <= chunk.len() && chunk[at..at + 4] == [0x2a, 0x2a, 0, 0] {
        let size = u32_at(chunk, at + 4) as usize;
        if size < 28 || at + size > chunk.len() || u32_at(chunk, at + size - 4) as usize != size {
            break;
        }
        n += 1;
        at += size;
    }
    n
}

/// An error with its causes, as the `evtx` package words it (each after a colon).
pub fn chained(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Open and check the file: its chunks to read, and its damage.
/// `buffer`: memory to read into (a previous file's, `Chunks::into_buffer`).
pub fn open(path: &str, mut buffer: Vec<u8>) -> Result<(Chunks, Damage), OpenError> {
    let mut file = File::open(path).map_err(OpenError::Io)?;
    let size = file.metadata().map_err(OpenError::Io)?.len();
    buffer.clear();
    let mut source = if size <= IN_MEMORY {
        file.read_to_end(&mut buffer).map_err(OpenError::Io)?;
        Source::Memory(buffer)
    } else {
        Source::File(file, buffer)
    };
    let head = source.at(0).map_err(OpenError::Io)?;
    let head = head[..head.len().min(FILE_HEADER as usize)].to_vec();
    if !head.starts_with(b"ElfFile\x00") {
        return Err(OpenError::Format("not an EVTX file (bad signature)".into()));
    }
    let mut damage = Damage::new();
    if head.len() >= 44 {
        let chunks = u16::from_le_bytes([head[42], head[43]]) as u64;
        let whole = size.saturating_sub(FILE_HEADER) / CHUNK as u64;
        if whole < chunks {
            // the parser silently drops a cut chunk: say so
            damage.push((format!("file truncated: {whole} of {chunks} chunks complete, the \
                                  records of the cut chunk are lost"), None, 1));
        }
    }
    let mut damaged = Vec::new();
    let mut n = 0u64;
    loop {
        let chunk = source.at(FILE_HEADER + n * CHUNK as u64).map_err(OpenError::Io)?;
        if chunk.len() < CHUNK {
            break;
        }
        if let Some((what, records)) = chunk_damage(chunk) {
            damaged.push(n);
            damage.push((format!("chunk fails its {what} (CRC32): its records are not \
                                  imported"), Some(n), records.max(1)));
        }
        n += 1;
    }
    // what the parser makes of the copy without the damaged chunks: its header, its count
    let unreadable = |e: EvtxError| OpenError::Format(format!("not a readable EVTX file: {}",
                                                              chained(&e)));
    let header = EvtxFileHeader::from_stream(&mut Cursor::new(&head))
        .map_err(|e| unreadable(e.into()))?;
    let len = size - damaged.len() as u64 * CHUNK as u64;
    let Some(data) = len.checked_sub(header.header_block_size.into()) else {
        return Err(unreadable(EvtxError::CalculationError(format!(
            "Could not calculate valid chunk count because stream size is less than evtx \
             header block size. (stream_size: {len}, header_block_size: {})",
            header.header_block_size))));
    };
    let count = data / CHUNK as u64;
    Ok((Chunks { source, damaged, next: 0, skipped: 0, count }, damage))
}

impl Chunks {
    /// The memory the file was read into, for the next one.
    pub fn into_buffer(self) -> Vec<u8> {
        match self.source {
            Source::Memory(data) | Source::File(_, data) => data,
        }
    }

    /// The next chunk's data as the parser's chunk iterator gives it; None at the end.
    pub fn next_chunk(&mut self) -> Option<Result<EvtxChunkData, EvtxError>> {
        loop {
            let physical = self.next;
            self.next += 1;
            if self.damaged.get(self.skipped) == Some(&physical) {
                self.skipped += 1;
                continue;
            }
            let number = physical - self.skipped as u64; // its number in the copy
            let read = match self.source.at(FILE_HEADER + physical * CHUNK as u64) {
                Ok(d) if d.len() == CHUNK => {
                    if d.iter().all(|b| *b == 0) {
                        continue; // an empty chunk in a dirty file
                    }
                    EvtxChunkData::new(d.to_vec(), false)
                }
                _ => Err(ChunkError::IncompleteChunk),
            };
            return match read {
                Ok(chunk) => Some(Ok(chunk)),
                // past the count a chunk that fails ends the file, as in the parser (it
                // reads on only for a dirty file's chunks)
                Err(_) if number >= self.count => None,
                Err(e) => Some(Err(EvtxError::FailedToParseChunk { chunk_id: number,
                                                                   source: Box::new(e) })),
            };
        }
    }
}
