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

/// Size of the write buffer of a file streamed to disk.
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

/// Files up to this size are built in memory and written, fsynced and renamed in one blocking
/// task with the rest of their contact's files; a larger one is streamed to its temporary file
/// from the byte that crosses it. With `concurrency` contacts under way, at most
/// `concurrency` such buffers are held.
pub(super) const IN_MEMORY: usize = 256 * 1024;

/// A payload file being written: in memory until it reaches [`IN_MEMORY`] bytes, then streamed
/// to its temporary name. Dropped before [`finish`] (an error, a cancelled task), it removes
/// the temporary file: nothing partial survives, and nothing is ever written under the final
/// name but by the rename.
///
/// [`finish`]: PayloadWriter::finish
pub(super) struct PayloadWriter {
    final_path: PathBuf,
    sink: Sink,
    hasher: Sha256,
    size: u64,
    /// Up to two bytes of an attachment not yet encoded (base64 encodes 3 bytes at a time).
    carry: Vec<u8>,
    /// Reused buffer for encoded base64 text.
    encoded: String,
}

/// Where a [`PayloadWriter`]'s bytes are.
enum Sink {
    Memory(Vec<u8>),
    File { temp: TempFile, file: BufWriter<tokio::fs::File> },
}

impl std::fmt::Debug for PayloadWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadWriter")
            .field("final_path", &self.final_path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PayloadWriter {
    /// Starts the file for `final_path`. Nothing is created yet: the temporary file is made
    /// when the bytes outgrow [`IN_MEMORY`].
    #[allow(clippy::unused_async)] // Kept async: callers await it like the writes.
    pub(super) async fn create(final_path: &Path) -> Result<Self, ExportError> {
        Ok(Self {
            final_path: final_path.to_owned(),
            sink: Sink::Memory(Vec::new()),
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
        if let Sink::Memory(buffer) = &mut self.sink {
            if buffer.len() + bytes.len() <= IN_MEMORY {
                buffer.extend_from_slice(bytes);
                return Ok(());
            }
            let buffered = std::mem::take(buffer);
            let path = temp_path(&self.final_path);
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::durable::PRIVATE_FILE)
                .open(&path)
                .await
                .map_err(|source| ExportError::io("create", &path, source))?;
            let temp = TempFile { path, keep: false };
            let mut file = BufWriter::with_capacity(BUFFER, file);
            file.write_all(&buffered)
                .await
                .map_err(|source| ExportError::io("write", &temp.path, source))?;
            self.sink = Sink::File { temp, file };
        }
        match &mut self.sink {
            Sink::File { temp, file } => file
                .write_all(bytes)
                .await
                .map_err(|source| ExportError::io("write", &temp.path, source)),
            Sink::Memory(_) => Ok(()),
        }
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

    /// Ends the file: a streamed one is flushed and fsynced under its temporary name; a file
    /// still in memory is handed back as it is, for [`Finished::stage`] to write in a blocking
    /// task.
    pub(super) async fn finish_deferred(mut self) -> Result<Finished, ExportError> {
        let written = Written { sha256: hex(&self.hasher.finalize_reset()), size: self.size };
        match self.sink {
            Sink::Memory(bytes) => Ok(Finished::Buffered { bytes, written }),
            Sink::File { mut temp, mut file } => {
                let path = temp.path.clone();
                file.flush().await.map_err(|source| ExportError::io("write", &path, source))?;
                file.get_mut()
                    .sync_all()
                    .await
                    .map_err(|source| ExportError::io("fsync", &path, source))?;
                Ok(Finished::Staged(StagedFile { temp: temp.take(), written }))
            }
        }
    }

    /// Ends the file and stages it: complete and fsynced under its temporary name until
    /// [`StagedFile::commit`].
    pub(super) async fn finish(self) -> Result<StagedFile, ExportError> {
        let final_path = self.final_path.clone();
        match self.finish_deferred().await? {
            Finished::Staged(staged) => Ok(staged),
            buffered @ Finished::Buffered { .. } => {
                super::blocking(move || buffered.stage(&final_path)).await
            }
        }
    }
}

/// A finished [`PayloadWriter`]: staged already, or still in memory.
#[derive(Debug)]
pub(super) enum Finished {
    /// Streamed to its temporary file, fsynced.
    Staged(StagedFile),
    /// Its bytes, with their digest and size.
    Buffered { bytes: Vec<u8>, written: Written },
}

impl Finished {
    /// A small file built in memory.
    pub(super) fn in_memory(bytes: Vec<u8>) -> Self {
        let written =
            Written { sha256: crate::canonical::sha256_hex(&bytes), size: bytes.len() as u64 };
        Finished::Buffered { bytes, written }
    }

    /// What the file holds.
    pub(super) fn written(&self) -> &Written {
        match self {
            Finished::Staged(staged) => &staged.written,
            Finished::Buffered { written, .. } => written,
        }
    }

    /// Stages the file for `final_path` (blocking: writes and fsyncs a buffered one).
    pub(super) fn stage(self, final_path: &Path) -> Result<StagedFile, ExportError> {
        match self {
            Finished::Staged(staged) => Ok(staged),
            Finished::Buffered { bytes, written } => {
                StagedFile::stage_written(final_path, &bytes, written)
            }
        }
    }
}

/// A complete, fsynced file under its temporary name, removed if dropped uncommitted.
#[derive(Debug)]
pub(super) struct StagedFile {
    temp: TempFile,
    pub(super) written: Written,
}

impl StagedFile {
    /// Stages `bytes`, whose digest and size are `written`, under a temporary name for
    /// `final_path`.
    fn stage_written(
        final_path: &Path,
        bytes: &[u8],
        written: Written,
    ) -> Result<Self, ExportError> {
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
    // On the stack: a 64 KiB heap buffer a file made the allocator consolidate on every free.
    let mut buffer = [0u8; 16 * 1024];
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

    /// A file larger than [`IN_MEMORY`] goes to its temporary file from the write that crosses
    /// the limit, and holds every byte, in order, as a file kept in memory would.
    #[tokio::test]
    async fn a_large_file_spills_to_disk_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(IN_MEMORY * 2 + 7).collect();
        let target = dir.path().join("big.json");
        let mut writer = PayloadWriter::create(&target).await.unwrap();
        for chunk in data.chunks(10_000) {
            writer.write(chunk).await.unwrap();
        }
        let finished = writer.finish_deferred().await.unwrap();
        assert!(matches!(finished, Finished::Staged(_)), "{finished:?}");
        // Staged: complete under its temporary name, nothing under the final one.
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let written = finished.stage(&target).unwrap().commit(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert_eq!(measure(&target).unwrap(), written);

        let small = dir.path().join("small.json");
        let mut writer = PayloadWriter::create(&small).await.unwrap();
        writer.write(&data[..IN_MEMORY]).await.unwrap();
        let finished = writer.finish_deferred().await.unwrap();
        assert!(matches!(finished, Finished::Buffered { .. }), "{finished:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing written yet");
        let written = finished.stage(&small).unwrap().commit(&small).unwrap();
        assert_eq!(std::fs::read(&small).unwrap(), &data[..IN_MEMORY]);
        assert_eq!(measure(&small).unwrap(), written);
    }

    #[tokio::test]
    async fn a_dropped_writer_leaves_no_file_on_disk_or_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        let mut writer = PayloadWriter::create(&target).await.unwrap();
        writer.write(&vec![b'x'; IN_MEMORY + 1]).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "spilled");
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
