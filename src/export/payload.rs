//! One payload file being written: streamed to a temporary name beside its final one, hashed and
//! counted as it is written, fsynced, then renamed into place; and the re-read that verifies it.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::ExportError;
use crate::canonical::hex;

/// Size of the write buffer and of the chunks read back when verifying.
const BUFFER: usize = 64 * 1024;

/// The marker of temporary names (`<final>.tmp.<pid>.<n>`, as [`crate::durable`] names them),
/// so a bag can recognise and remove what a crash left behind.
pub(super) const TEMP_MARKER: &str = ".tmp.";

/// A temporary name beside `path`, unique to this process and call.
pub(super) fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        "{TEMP_MARKER}{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    PathBuf::from(name)
}

/// What was written: the digest and size of the bytes, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Written {
    pub(super) sha256: String,
    pub(super) size: u64,
}

/// A payload file being streamed to its temporary name. Dropped before [`finish`]
/// (an error, a cancelled task), it removes the temporary file: nothing partial survives, and
/// nothing is ever written under the final name but by the rename.
///
/// [`finish`]: PayloadWriter::finish
pub(super) struct PayloadWriter {
    temp: TempFile,
    file: BufWriter<tokio::fs::File>,
    hasher: Sha256,
    size: u64,
    /// Up to two bytes of an attachment not yet encoded (base64 encodes 3 bytes at a time).
    carry: Vec<u8>,
    /// Reused buffer for encoded base64 text.
    encoded: String,
}

impl std::fmt::Debug for PayloadWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadWriter")
            .field("temp", &self.temp.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PayloadWriter {
    /// Creates the temporary file for `final_path`.
    pub(super) async fn create(final_path: &Path) -> Result<Self, ExportError> {
        let path = temp_path(final_path);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::durable::PRIVATE_FILE)
            .open(&path)
            .await
            .map_err(|source| ExportError::io("create", &path, source))?;
        Ok(Self {
            temp: TempFile { path, keep: false },
            file: BufWriter::with_capacity(BUFFER, file),
            hasher: Sha256::new(),
            size: 0,
            carry: Vec::with_capacity(3),
            encoded: String::new(),
        })
    }

    /// Appends `bytes`, hashing and counting them.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .await
            .map_err(|source| ExportError::io("write", &self.temp.path, source))
    }

    /// Appends `value` as compact JSON (a field name, a string, a small object).
    pub(super) async fn write_json<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ExportError> {
        // Serialising plain data into a Vec cannot fail; if it ever did, the file would be
        // incomplete, so say so rather than write nothing.
        let bytes = serde_json::to_vec(value).map_err(|_| ExportError::Encoding)?;
        self.write(&bytes).await
    }

    /// Appends a chunk of an attachment as base64, carrying the 0 to 2 bytes that do not make a
    /// whole 3-byte group to the next chunk, so the text is the encoding of the whole stream.
    pub(super) async fn write_base64_chunk(&mut self, mut chunk: &[u8]) -> Result<(), ExportError> {
        let engine = &base64::engine::general_purpose::STANDARD;
        self.encoded.clear();
        if !self.carry.is_empty() {
            let take = (3 - self.carry.len()).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            self.carry.extend_from_slice(head);
            chunk = rest;
            if self.carry.len() < 3 {
                return Ok(());
            }
            engine.encode_string(&self.carry, &mut self.encoded);
            self.carry.clear();
        }
        let whole = chunk.len() - chunk.len() % 3;
        let (groups, rest) = chunk.split_at(whole);
        engine.encode_string(groups, &mut self.encoded);
        self.carry.extend_from_slice(rest);
        let encoded = std::mem::take(&mut self.encoded);
        let result = self.write(encoded.as_bytes()).await;
        self.encoded = encoded;
        result
    }

    /// Ends an attachment's base64 text: encodes the carried bytes with padding.
    pub(super) async fn finish_base64(&mut self) -> Result<(), ExportError> {
        if self.carry.is_empty() {
            return Ok(());
        }
        let text = base64::engine::general_purpose::STANDARD.encode(&self.carry);
        self.carry.clear();
        self.write(text.as_bytes()).await
    }

    /// Flushes and fsyncs the temporary file. The file stays under its temporary name until
    /// [`StagedFile::commit`].
    pub(super) async fn finish(mut self) -> Result<StagedFile, ExportError> {
        let path = self.temp.path.clone();
        self.file.flush().await.map_err(|source| ExportError::io("write", &path, source))?;
        self.file
            .get_mut()
            .sync_all()
            .await
            .map_err(|source| ExportError::io("fsync", &path, source))?;
        let written = Written { sha256: hex(&self.hasher.finalize_reset()), size: self.size };
        Ok(StagedFile { temp: self.temp.take(), written })
    }
}

/// A complete, fsynced file under its temporary name, removed if dropped uncommitted.
#[derive(Debug)]
pub(super) struct StagedFile {
    temp: TempFile,
    pub(super) written: Written,
}

impl StagedFile {
    /// Stages `bytes` (a small file, already in memory) under a temporary name for `final_path`.
    pub(super) fn stage_bytes(final_path: &Path, bytes: &[u8]) -> Result<Self, ExportError> {
        use std::io::Write as _;
        let path = temp_path(final_path);
        let temp = TempFile { path, keep: false };
        let io = |action, source| ExportError::io(action, &temp.path, source);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::durable::PRIVATE_FILE)
            .open(&temp.path)
            .map_err(|e| io("create", e))?;
        file.write_all(bytes).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("fsync", e))?;
        let written =
            Written { sha256: crate::canonical::sha256_hex(bytes), size: bytes.len() as u64 };
        Ok(Self { temp, written })
    }

    /// Renames the file to `final_path` (replacing an earlier export atomically). The caller
    /// fsyncs the directory once all of a contact's files are renamed.
    pub(super) fn commit(mut self, final_path: &Path) -> Result<Written, ExportError> {
        std::fs::rename(&self.temp.path, final_path)
            .map_err(|source| ExportError::io("rename", &self.temp.path, source))?;
        self.temp.keep = true;
        Ok(self.written)
    }
}

/// A temporary file that is removed when dropped, unless kept.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Moves the responsibility for the file to the returned value.
    fn take(&mut self) -> TempFile {
        let taken = TempFile { path: self.path.clone(), keep: self.keep };
        self.keep = true;
        taken
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Re-reads `path` from disk and returns the digest and size of what is there.
pub(super) fn measure(path: &Path) -> Result<Written, ExportError> {
    let mut file =
        std::fs::File::open(path).map_err(|source| ExportError::io("open", path, source))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; BUFFER];
    let mut size = 0u64;
    loop {
        let read =
            file.read(&mut buffer).map_err(|source| ExportError::io("read", path, source))?;
        let Some(bytes) = buffer.get(..read) else { break };
        if bytes.is_empty() {
            break;
        }
        hasher.update(bytes);
        size += read as u64;
    }
    Ok(Written { sha256: hex(&hasher.finalize()), size })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed encoding equals the one-shot encoding, whatever the chunk boundaries.
    #[tokio::test]
    async fn base64_is_the_same_whatever_the_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for split in [1usize, 2, 3, 4, 5, 7, 64, 999, 1000] {
            let target = dir.path().join(format!("f{split}"));
            let mut writer = PayloadWriter::create(&target).await.unwrap();
            for chunk in data.chunks(split) {
                writer.write_base64_chunk(chunk).await.unwrap();
            }
            writer.finish_base64().await.unwrap();
            let staged = writer.finish().await.unwrap();
            let written = staged.commit(&target).unwrap();
            let text = std::fs::read_to_string(&target).unwrap();
            assert_eq!(text, base64::engine::general_purpose::STANDARD.encode(&data), "{split}");
            assert_eq!(measure(&target).unwrap(), written);
        }
    }

    #[tokio::test]
    async fn a_dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        let mut writer = PayloadWriter::create(&target).await.unwrap();
        writer.write(b"{\"partial\":").await.unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
