//! TLS material that follows its files.
//!
//! A watcher re-reads the files every `--tls-reload-interval` (by path,
//! so a Kubernetes Secret volume, which swaps a `..data` symlink, is seen
//! like any rewrite; a `subPath` mount never changes and so is not
//! supported) and, when their contents changed, builds new material. If
//! the new files are invalid — half written, a key that does not match,
//! a certificate from an untrusted CA — the last good material stays in
//! use and the error is logged once; the next change is tried again.
//! Servers and clients read the current material on every handshake, so
//! a rotation needs no restart; open connections keep the keys they
//! started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anatomy_certs::{Identity, TlsDir};
use arc_swap::ArcSwap;

use super::material::{self, Files, Material, Names, TlsError};

/// Where the files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// The trust bundle; `None` for a public server certificate.
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsPaths {
    /// `identity`'s files in a TLS directory (`ca.pem`, `<identity>.pem`,
    /// `<identity>.key`).
    pub fn in_dir(dir: &Path, identity: Identity) -> Self {
        let dir = TlsDir::new(dir);
        Self {
            ca: Some(dir.ca_path()),
            cert: dir.cert_path(identity),
            key: dir.key_path(identity),
        }
    }

    fn names(&self) -> Names {
        Names {
            ca: self
                .ca
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
            cert: self.cert.display().to_string(),
        }
    }

    fn read(&self) -> Result<Files, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        Ok(Files {
            ca: self.ca.as_deref().map(read).transpose()?,
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        })
    }
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// The files are as they were.
    Unchanged,
    /// New material is in use.
    Loaded,
    /// The files changed but are not usable; the last good material stays.
    Rejected(TlsError),
}

/// The current material of one identity, reloaded from its files.
#[derive(Debug)]
pub struct CertStore {
    paths: TlsPaths,
    expect: Option<Identity>,
    current: ArcSwap<Material>,
    /// The file contents last tried (good or not).
    seen: Mutex<Files>,
    loads: AtomicU64,
}

impl CertStore {
    /// Reads and checks the files; fails if they are not usable now.
    /// With `expect`, the certificate must name that identity.
    pub fn open(paths: TlsPaths, expect: Option<Identity>) -> Result<Arc<Self>, TlsError> {
        let files = paths.read()?;
        let material = material::build(&files, &paths.names(), expect)?;
        Ok(Arc::new(Self {
            paths,
            expect,
            current: ArcSwap::from_pointee(material),
            seen: Mutex::new(files),
            loads: AtomicU64::new(1),
        }))
    }

    /// The material in use now.
    pub fn current(&self) -> Arc<Material> {
        self.current.load_full()
    }

    /// The identity this store holds a certificate for.
    pub fn identity(&self) -> Option<Identity> {
        self.expect.or(self.current().identity)
    }

    /// How many times material was loaded (1 after `open`).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Acquire)
    }

    /// Looks at the files once.
    pub fn reload(&self) -> Reload {
        let files = match self.paths.read() {
            Ok(files) => files,
            Err(e) => return self.note_unreadable(e),
        };
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Reload::Unchanged;
            };
            if *seen == files {
                return Reload::Unchanged;
            }
            *seen = files.clone();
        }
        match material::build(&files, &self.paths.names(), self.expect) {
            Ok(material) => {
                self.current.store(Arc::new(material));
                self.loads.fetch_add(1, Ordering::AcqRel);
                Reload::Loaded
            }
            Err(e) => Reload::Rejected(e),
        }
    }

    /// A missing file mid-rotation is a change too, tried again next time.
    fn note_unreadable(&self, e: TlsError) -> Reload {
        if let Ok(mut seen) = self.seen.lock() {
            seen.cert.clear();
        }
        Reload::Rejected(e)
    }

    /// Re-reads the files every `every` for as long as the store is used
    /// elsewhere, logging each change.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let what = self.paths.cert.display().to_string();
        tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = weak.upgrade() else { return };
                match store.reload() {
                    Reload::Unchanged => {}
                    Reload::Loaded => {
                        last_error.clear();
                        tracing::info!(cert = %what, "reloaded the TLS certificate and CAs");
                        metrics::counter!("tls_reloads_total", "result" => "loaded").increment(1);
                    }
                    Reload::Rejected(e) => {
                        let message = e.to_string();
                        if message != last_error {
                            tracing::warn!(error = %message, "new TLS files are not usable; keeping the current certificate");
                            metrics::counter!("tls_reloads_total", "result" => "rejected")
                                .increment(1);
                            last_error = message;
                        }
                    }
                }
            }
        })
    }
}
