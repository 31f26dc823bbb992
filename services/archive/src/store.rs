//! The archive's object store from its URL: `file:///data/archive` (the stage's volume) or
//! `s3://bucket/prefix` (any S3-compatible service: custom endpoint, path-style requests, plain
//! HTTP for a cluster-internal endpoint).
//!
//! Writes are whole objects (`put`): object_store's local file system writes a temporary file
//! beside the target (`<name>#<n>`) and renames it into place, S3 makes an object visible only
//! when its PUT completed; either way no reader ever sees part of a file under its final name.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

/// Settings of an S3-compatible store beyond the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The service's base URL (MinIO, Ceph, Garage, ...); unset = AWS.
    pub endpoint: Option<String>,
    /// The region (S3-compatible services mostly accept any, e.g. `us-east-1`).
    pub region: Option<String>,
    /// Access key id; unset = the AWS environment/instance credentials chain.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// `http://host/bucket/key` instead of `http://bucket.host/key` (what most self-hosted services need).
    pub path_style: bool,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one the archive supports.
    #[error("archive url {url:?}: {problem}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The store refused an operation (network, permissions, disk).
    #[error("archive store: {what} {path}: {source}")]
    Op {
        /// The operation.
        what: &'static str,
        /// The object.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// Store operations are retried (with backoff); a bad URL is a configuration error.
    pub fn retryable(&self) -> bool {
        matches!(self, StoreError::Op { .. })
    }
}

/// An object store and the archive's root prefix in it.
#[derive(Debug, Clone)]
pub struct ArchiveStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix below which the archive lives (empty: the store's top).
    pub root: Path,
    /// The URL it was opened from, for logs.
    pub url: String,
}

impl ArchiveStore {
    /// Opens `url`. A `file://` directory is created when missing.
    pub fn open(url: &str, s3: &S3Options) -> Result<ArchiveStore, StoreError> {
        let bad = |problem: String| StoreError::Url { url: url.to_owned(), problem };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| bad("not an absolute local path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(format!("{} cannot be created: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?;
                Ok(ArchiveStore { store: Arc::new(fs), root: Path::default(), url: url.to_owned() })
            }
            "s3" => {
                let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket".into()))?;
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_allow_http(s3.allow_http);
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = &s3.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = &s3.secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                let store = b.build().map_err(|e| bad(e.to_string()))?;
                let root = Path::from(parsed.path().trim_matches('/'));
                Ok(ArchiveStore { store: Arc::new(store), root, url: url.to_owned() })
            }
            other => Err(bad(format!("scheme {other:?} is not supported; use file:///path or s3://bucket/prefix"))),
        }
    }

    /// The whole object, or `None` when it does not exist.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(path).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|source| op("read", path, source)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(op("get", path, source)),
        }
    }

    /// Writes the whole object atomically.
    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store.put(path, PutPayload::from(bytes)).await.map(drop).map_err(|source| op("put", path, source))
    }

    /// Deletes the object; a missing object counts as deleted.
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(op("delete", path, source)),
        }
    }

    /// Every object below `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StoreError> {
        self.store.list(Some(prefix)).try_collect().await.map_err(|source| op("list", prefix, source))
    }
}

fn op(what: &'static str, path: &Path, source: object_store::Error) -> StoreError {
    StoreError::Op { what, path: path.to_string(), source }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/nested/archive", dir.path().display());
        let s = ArchiveStore::open(&url, &S3Options::default()).unwrap();
        assert!(dir.path().join("nested/archive").is_dir());
        assert_eq!(s.root, Path::default());
        let s3 = ArchiveStore::open(
            "s3://bucket/some/prefix/",
            &S3Options {
                endpoint: Some("http://127.0.0.1:9000".into()),
                path_style: true,
                allow_http: true,
                ..S3Options::default()
            },
        )
        .unwrap();
        assert_eq!(s3.root.as_ref(), "some/prefix");
        for bad in ["relative/path", "gs://bucket", "s3:///nobucket", "file://host/x"] {
            let e = ArchiveStore::open(bad, &S3Options::default()).unwrap_err();
            assert!(!e.retryable(), "{bad}: {e}");
        }
    }

    /// A reader listing the directory while files are written must never see a `.parquet` name
    /// whose content is not the whole file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_partial_file_is_ever_visible_under_a_parquet_name() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let s = ArchiveStore::open(&format!("file://{}", dir.path().display()), &S3Options::default()).unwrap();
        // A real file, 4 MiB of rows, so a write takes long enough to be watched mid-way.
        let rows: Vec<crate::rows::Row> = (0..20_000)
            .map(|i| {
                let t = time::macros::datetime!(2026-11-26 10:00 UTC) + time::Duration::milliseconds(i);
                let o = geostream_model::Observation::try_new(
                    geostream_model::FeedId::new("f").unwrap(),
                    None,
                    t,
                    t,
                    geostream_model::geojson::Geometry::new_point([i as f64 * 1e-5, 1.0]),
                    serde_json::Map::from_iter([("pad".to_owned(), serde_json::json!("x".repeat(150)))]),
                )
                .unwrap();
                crate::rows::Row::parse(crate::ArchiveKind::Observations, 0, i, &serde_json::to_vec(&o).unwrap())
                    .unwrap()
            })
            .collect();
        let batch = crate::rows::to_batch(crate::ArchiveKind::Observations, &rows).unwrap();
        let bytes = crate::geoparquet::write(&[batch]).unwrap();
        let size = bytes.len() as u64;
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let checked = std::sync::Arc::new(AtomicUsize::new(0));
        let watch_dir = dir.path().join("t/h");
        let watcher = {
            let (done, checked) = (done.clone(), checked.clone());
            std::thread::spawn(move || {
                let mut partial_names = 0;
                while !done.load(Ordering::SeqCst) {
                    let Ok(entries) = std::fs::read_dir(&watch_dir) else { continue };
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if !name.ends_with(".parquet") {
                            partial_names += 1;
                            continue;
                        }
                        // Opened by name: whatever file the name points to must be complete.
                        let Ok(content) = std::fs::read(e.path()) else { continue };
                        assert_eq!(content.len() as u64, size, "{name} visible with {} bytes", content.len());
                        assert_eq!(&content[content.len() - 4..], b"PAR1", "{name} has no footer");
                        checked.fetch_add(1, Ordering::SeqCst);
                    }
                }
                partial_names
            })
        };
        for i in 0..40 {
            // Overwriting the same names too: a reader of an old version still sees a whole file.
            s.put(&Path::from(format!("t/h/f{}.parquet", i % 8)), bytes.clone()).await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let temporaries_seen = watcher.join().unwrap();
        assert!(checked.load(Ordering::SeqCst) > 0, "the watcher never saw a file");
        eprintln!("temporary files seen under other names: {temporaries_seen}");
    }

    #[tokio::test]
    async fn missing_objects_read_as_none_and_delete_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let s = ArchiveStore::open(&format!("file://{}", dir.path().display()), &S3Options::default()).unwrap();
        let p = Path::from("a/b/c.json");
        assert_eq!(s.get(&p).await.unwrap(), None);
        s.delete(&p).await.unwrap();
        s.put(&p, b"{}".to_vec()).await.unwrap();
        assert_eq!(s.get(&p).await.unwrap().unwrap().as_ref(), b"{}");
        assert_eq!(s.list(&Path::from("a")).await.unwrap().len(), 1);
        s.delete(&p).await.unwrap();
        assert_eq!(s.get(&p).await.unwrap(), None);
    }
}
