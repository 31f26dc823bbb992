//! Partition state on the stage's volume: one file per input partition, written by atomic rename
//! and checksummed, so a crash leaves either the old or the new checkpoint and a damaged file is
//! detected rather than restored.
//!
//! The volume copy is a cache: the authoritative copy is the record on `<tenant>.process-state`
//! written in the same transaction as the outputs. On assignment the processor uses the file only
//! if it matches the group's committed offset and its metadata exactly (see
//! [`crate::task::CommitMark`]), which is what makes a restart after `kill -9` cheap without ever
//! risking state that is ahead of or behind the offsets.
//!
//! Layout: `GSPC2\n`, the CRC-32 of the body (4 bytes, little endian), the body's length (8 bytes,
//! little endian), then the body: the encoded [`TaskState`] (see [`encode`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::task::TaskState;

const MAGIC: &[u8; 6] = b"GSPC2\n";
/// The format before the reorder buffer left the checkpoint; not read (its buffer cannot be
/// placed in the input again).
const MAGIC_V1: &[u8; 6] = b"GSPC1\n";
const HEADER: usize = MAGIC.len() + 4 + 8;

/// A checkpoint that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The bytes are not a checkpoint of this version, or are damaged.
    #[error("checkpoint {what}: {problem}")]
    Corrupt {
        /// The file or record.
        what: String,
        /// What is wrong.
        problem: String,
    },
}

impl geostream_model::Classify for CheckpointError {
    fn class(&self) -> geostream_model::ErrorClass {
        match self {
            CheckpointError::Io { .. } => geostream_model::ErrorClass::External,
            CheckpointError::Corrupt { .. } => geostream_model::ErrorClass::Internal,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, CheckpointError::Io { .. })
    }
}

/// Encodes a state with the header and checksum (the same bytes go to the file and to Kafka).
pub fn encode(state: &TaskState) -> Vec<u8> {
    // A TaskState is plain data of strings, numbers and maps with string keys: JSON cannot fail.
    let body = serde_json::to_vec(state).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes what [`encode`] wrote; `what` names the source in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<TaskState, CheckpointError> {
    let corrupt = |problem: String| CheckpointError::Corrupt { what: what.to_owned(), problem };
    if bytes.len() >= HEADER && &bytes[..MAGIC_V1.len()] == MAGIC_V1 {
        return Err(corrupt(
            "written by an earlier geostream (format 1, with the reorder buffer inside); not read".into(),
        ));
    }
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a geostream partition checkpoint (bad header)".into()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[6..10]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[10..18]);
    let body = &bytes[HEADER..];
    if u64::from_le_bytes(len) != body.len() as u64 {
        return Err(corrupt(format!("body is {} bytes, header says {}", body.len(), u64::from_le_bytes(len))));
    }
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(corrupt("checksum mismatch".into()));
    }
    serde_json::from_slice(body).map_err(|e| corrupt(format!("body: {e}")))
}

/// The checkpoint files of one processor instance.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    /// Uses (and creates) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| CheckpointError::Io { path: dir.clone(), source })?;
        Ok(Self { dir })
    }

    /// The file of `partition`.
    pub fn path(&self, partition: i32) -> PathBuf {
        self.dir.join(format!("p{partition}.ckpt"))
    }

    /// Writes the state of its partition: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, state: &TaskState) -> Result<(), CheckpointError> {
        self.save_encoded(state.partition, &encode(state))
    }

    /// Writes what [`encode`] made of `partition`'s state (the bytes the state topic got).
    pub fn save_encoded(&self, partition: i32, encoded: &[u8]) -> Result<(), CheckpointError> {
        let path = self.path(partition);
        let tmp = self.dir.join(format!(".p{partition}.ckpt.tmp"));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| CheckpointError::Io { path: p, source }
        };
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(encoded).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        Ok(())
    }

    /// The state of `partition`, if a checkpoint exists.
    pub fn load(&self, partition: i32) -> Result<Option<TaskState>, CheckpointError> {
        let path = self.path(partition);
        match fs::read(&path) {
            Ok(bytes) => {
                let state = decode(&bytes, &path.display().to_string())?;
                if state.partition != partition {
                    return Err(CheckpointError::Corrupt {
                        what: path.display().to_string(),
                        problem: format!("holds partition {}", state.partition),
                    });
                }
                Ok(Some(state))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io { path, source }),
        }
    }

    /// Removes the checkpoint of `partition` (a damaged one, so it is not tried again).
    pub fn remove(&self, partition: i32) {
        let _ = fs::remove_file(self.path(partition));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_analytics::engine::Engine;

    fn state(partition: i32, next_offset: i64) -> TaskState {
        TaskState {
            partition,
            next_offset,
            resume_offset: next_offset - 3,
            max_event_ns: Some(1_700_000_000_000_000_123),
            watermark_ns: None,
            engine: Engine::new(&[]).unwrap().state(),
        }
    }

    #[test]
    fn saved_states_load_back_and_replace_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let c = CheckpointDir::open(dir.path().join("ckpt")).unwrap();
        assert!(c.load(4).unwrap().is_none());
        c.save(&state(4, 10)).unwrap();
        c.save(&state(4, 20)).unwrap();
        assert_eq!(c.load(4).unwrap(), Some(state(4, 20)));
        assert!(c.load(5).unwrap().is_none());
    }

    #[test]
    fn any_damage_is_detected() {
        let good = encode(&state(1, 7));
        assert_eq!(decode(&good, "x").unwrap(), state(1, 7));
        for i in [0, 7, 12, HEADER + 3, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert!(decode(&bad, "x").is_err(), "flipped byte {i}");
        }
        assert!(decode(&good[..good.len() - 1], "x").unwrap_err().to_string().contains("header says"));
        let dir = tempfile::tempdir().unwrap();
        let c = CheckpointDir::open(dir.path()).unwrap();
        std::fs::write(c.path(2), encode(&state(3, 1))).unwrap();
        assert!(c.load(2).unwrap_err().to_string().contains("holds partition 3"));
        let mut v1 = good.clone();
        v1[4] = b'1';
        assert!(decode(&v1, "x").unwrap_err().to_string().contains("earlier geostream"));
    }
}
