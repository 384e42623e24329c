//! The journal: the one file a batch fsyncs. Each record is self-checking, so recovery can tell a
//! record that was fully written (and maybe acknowledged) from a torn one (never acknowledged).
//!
//! ```text
//! record  := u64 BE len(payload) || SHA-256(payload) || payload
//! payload := kind u8 || u64 BE tree size before it || body
//!   kind 0, base:  u64 BE `entries` bytes at that size || signed checkpoint of that size
//!                  (the first record; the derived files are durable up to it)
//!   kind 1, batch: u32 BE count || count × (u16 BE len || entry) || signed checkpoint after it
//! ```

use sha2::{Digest as _, Sha256};

use super::super::checkpoint::SignedCheckpoint;
use super::super::TlogError;

const KIND_BASE: u8 = 0;
const KIND_BATCH: u8 = 1;
/// Length prefix and SHA-256 before each payload.
const RECORD_HEADER: usize = 8 + 32;

/// The base record: the state the derived files were made durable at.
#[derive(Debug)]
pub(super) struct Base {
    pub(super) size: u64,
    pub(super) entries_len: u64,
    pub(super) checkpoint: SignedCheckpoint,
}

/// One batch record: entries appended at `first`, and the checkpoint signed after them.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) first: u64,
    pub(super) entries: Vec<Vec<u8>>,
    pub(super) checkpoint: SignedCheckpoint,
}

/// What a journal file holds: its base and the whole batch records after it (a torn tail after them
/// was never acknowledged).
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) base: Base,
    pub(super) batches: Vec<Batch>,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The encoded base record.
pub(super) fn encode_base(size: u64, entries_len: u64, checkpoint: &SignedCheckpoint) -> Vec<u8> {
    let mut p = Vec::with_capacity(17 + checkpoint.as_bytes().len());
    p.push(KIND_BASE);
    p.extend_from_slice(&size.to_be_bytes());
    p.extend_from_slice(&entries_len.to_be_bytes());
    p.extend_from_slice(checkpoint.as_bytes());
    frame(&p)
}

/// The encoded batch record. `framed_entries` is the batch exactly as appended to `entries`
/// (u16 length || bytes each), so it is copied, not re-framed.
pub(super) fn encode_batch(
    first: u64,
    count: usize,
    framed_entries: &[u8],
    checkpoint: &SignedCheckpoint,
) -> Result<Vec<u8>, TlogError> {
    let count = u32::try_from(count)
        .map_err(|_| TlogError::corrupt("batch size", count, "at most u32::MAX entries"))?;
    let mut p = Vec::with_capacity(13 + framed_entries.len() + checkpoint.as_bytes().len());
    p.push(KIND_BATCH);
    p.extend_from_slice(&first.to_be_bytes());
    p.extend_from_slice(&count.to_be_bytes());
    p.extend_from_slice(framed_entries);
    p.extend_from_slice(checkpoint.as_bytes());
    Ok(frame(&p))
}

/// A cursor over a payload whose checksum matched: a short read here means we wrote something
/// malformed, so it is corruption, not a torn tail.
struct Cursor<'a> {
    rest: &'a [u8],
    at: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TlogError> {
        if self.rest.len() < n {
            return Err(TlogError::corrupt(
                "journal record",
                format!("{} bytes left at journal byte {}", self.rest.len(), self.at),
                format!("{n} more"),
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, TlogError> {
        let b: [u8; 8] = self.take(8)?.try_into().unwrap_or([0; 8]);
        Ok(u64::from_be_bytes(b))
    }
}

/// Parses a journal file. The first record must be a whole base; after it, parsing stops at the
/// first record that is cut short or fails its checksum.
///
/// # Errors
/// [`TlogError::Corrupt`] if the base is missing or damaged (it was written and synced before the
/// journal replaced the previous one, so that is not a crash), or a checksummed record is malformed.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, TlogError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + RECORD_HEADER) {
        let (len, digest) = header.split_at(8);
        let len = u64::from_be_bytes(len.try_into().unwrap_or([0xff; 8]));
        let Some(payload) = usize::try_from(len).ok().and_then(|len| {
            bytes.get(pos + RECORD_HEADER..(pos + RECORD_HEADER).checked_add(len)?)
        }) else {
            break;
        };
        if Sha256::digest(payload)[..] != *digest {
            break;
        }
        records.push((pos as u64, payload));
        pos += RECORD_HEADER + payload.len();
    }
    let mut records = records.into_iter();
    let Some((_, first)) = records.next() else {
        return Err(TlogError::corrupt(
            "journal",
            format!("{} bytes without a whole base record", bytes.len()),
            "a base record first",
        ));
    };
    let mut c = Cursor { rest: first, at: 0 };
    if c.take(1)? != [KIND_BASE] {
        return Err(TlogError::corrupt(
            "journal record 0",
            "not a base",
            "a base record",
        ));
    }
    let size = c.u64()?;
    let entries_len = c.u64()?;
    let base = Base {
        size,
        entries_len,
        checkpoint: SignedCheckpoint::parse(c.rest)?,
    };
    let mut batches = Vec::new();
    for (at, payload) in records {
        let mut c = Cursor { rest: payload, at };
        if c.take(1)? != [KIND_BATCH] {
            return Err(TlogError::corrupt(
                "journal record",
                format!("kind {:?} at byte {at}", payload.first()),
                "a batch record",
            ));
        }
        let first = c.u64()?;
        let count = u32::from_be_bytes(c.take(4)?.try_into().unwrap_or([0; 4]));
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let len = u16::from_be_bytes(c.take(2)?.try_into().unwrap_or([0; 2]));
            entries.push(c.take(usize::from(len))?.to_vec());
        }
        batches.push(Batch {
            first,
            entries,
            checkpoint: SignedCheckpoint::parse(c.rest)?,
        });
    }
    Ok(Parsed { base, batches })
}
