//! A TLS directory: the layout every Anatomy process reads.
//!
//! ```text
//! ca.pem                   the trust bundle: the CA that signs now, first,
//!                          then (during a CA rollover) the previous one
//! ca.key                   the signing CA's key (only this tool reads it)
//! <identity>.pem / .key    one pair per identity: gateway, business,
//!                          operator, storage-s<shard>-r<replica>
//! ```
//!
//! Every file is replaced atomically (written beside, then renamed), so a
//! process polling the directory never reads half a file. Private keys are
//! written mode 0600.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::authority::{Authority, CertError, LeafOptions, Pair};
use crate::{Identity, names};

/// The trust bundle's file name.
pub const CA_FILE: &str = "ca.pem";
/// The signing CA's key file name.
pub const CA_KEY_FILE: &str = "ca.key";

/// Why a TLS directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(
        "{dir} has no CA ({CA_FILE} and {CA_KEY_FILE}): create one with `anatomy-certs init --dir {dir}`"
    )]
    NoCa { dir: String },
    #[error("{path} holds no PEM certificate")]
    EmptyBundle { path: String },
    #[error(
        "another process holds {path} (making certificates); remove it if that process is gone"
    )]
    Locked { path: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A directory of certificates.
#[derive(Debug, Clone)]
pub struct TlsDir {
    path: PathBuf,
}

impl TlsDir {
    /// The directory at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The trust bundle.
    pub fn ca_path(&self) -> PathBuf {
        self.path.join(CA_FILE)
    }

    /// `identity`'s certificate.
    pub fn cert_path(&self, identity: Identity) -> PathBuf {
        self.path.join(identity.cert_file())
    }

    /// `identity`'s private key.
    pub fn key_path(&self, identity: Identity) -> PathBuf {
        self.path.join(identity.key_file())
    }

    /// Whether `identity` has both files.
    pub fn has(&self, identity: Identity) -> bool {
        self.cert_path(identity).is_file() && self.key_path(identity).is_file()
    }

    /// Whether the directory has a signing CA.
    pub fn has_ca(&self) -> bool {
        self.ca_path().is_file() && self.path.join(CA_KEY_FILE).is_file()
    }

    /// The CA that signs now: the first certificate of the bundle, with `ca.key`.
    pub fn authority(&self) -> Result<Authority, DirError> {
        if !self.has_ca() {
            return Err(DirError::NoCa {
                dir: self.path.display().to_string(),
            });
        }
        let bundle = self.bundle()?;
        let first = bundle.first().ok_or_else(|| DirError::EmptyBundle {
            path: self.ca_path().display().to_string(),
        })?;
        let key_path = self.path.join(CA_KEY_FILE);
        let key = fs::read_to_string(&key_path).map_err(io(&key_path))?;
        Ok(Authority::from_pem(first, &key)?)
    }

    /// The certificates of the trust bundle, each as PEM.
    pub fn bundle(&self) -> Result<Vec<String>, DirError> {
        let path = self.ca_path();
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        Ok(pem_certificates(&text))
    }

    /// Makes a CA unless there is a trust bundle, then a pair for every
    /// identity in `identities` that has none (which needs the CA key).
    /// Returns the identities it issued.
    pub fn init(
        &self,
        identities: &[Identity],
        options: &LeafOptions,
    ) -> Result<Vec<Identity>, DirError> {
        fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        // A bundle without the CA key is someone else's CA: never replace it.
        if !self.ca_path().exists() {
            let ca = Authority::generate(CA_VALIDITY)?;
            self.write_key(CA_KEY_FILE, &ca.key_pem())?;
            self.write(CA_FILE, ca.cert_pem())?;
        }
        let missing: Vec<Identity> = identities
            .iter()
            .copied()
            .filter(|id| !self.has(*id))
            .collect();
        if !missing.is_empty() {
            self.issue(&missing, options)?;
        }
        Ok(missing)
    }

    /// (Re)issues `identities` from the signing CA, keeping the extra
    /// names each one's current certificate has.
    pub fn issue(&self, identities: &[Identity], options: &LeafOptions) -> Result<(), DirError> {
        let ca = self.authority()?;
        for &identity in identities {
            let mut leaf = options.clone();
            if let Ok(current) = fs::read_to_string(self.cert_path(identity)) {
                for name in names::extra_names(&current) {
                    if !leaf.names.contains(&name) {
                        leaf.names.push(name);
                    }
                }
            }
            self.write_pair(identity, &ca.issue(identity, &leaf)?)?;
        }
        Ok(())
    }

    /// Every identity with a certificate and a key here, in order.
    pub fn identities(&self) -> Result<Vec<Identity>, DirError> {
        let mut out: Vec<Identity> = fs::read_dir(&self.path)
            .map_err(io(&self.path))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".pem")?.parse::<Identity>().ok()
            })
            .filter(|id| self.has(*id))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Re-issues every identity's pair (a rotation).
    pub fn renew(&self, options: &LeafOptions) -> Result<Vec<Identity>, DirError> {
        let all = self.identities()?;
        self.issue(&all, options)?;
        Ok(all)
    }

    /// Starts a CA rollover: a new signing CA, trusted alongside every CA
    /// trusted so far. Leaves are untouched (still valid: their CA is
    /// still trusted); renew them once every process trusts the new CA.
    pub fn rollover_ca(&self) -> Result<(), DirError> {
        let old = self.bundle()?;
        let ca = Authority::generate(CA_VALIDITY)?;
        let mut bundle = ca.cert_pem().to_string();
        for cert in old {
            bundle.push_str(&cert);
        }
        self.write(CA_FILE, &bundle)?;
        self.write_key(CA_KEY_FILE, &ca.key_pem())?;
        Ok(())
    }

    /// Ends a rollover: trust only the CA that signs now.
    pub fn retire_old_cas(&self) -> Result<usize, DirError> {
        let bundle = self.bundle()?;
        let first = bundle.first().ok_or_else(|| DirError::EmptyBundle {
            path: self.ca_path().display().to_string(),
        })?;
        self.write(CA_FILE, first)?;
        Ok(bundle.len() - 1)
    }

    /// Copies each identity's files into `to/<identity>/` (ca.pem, the
    /// pair): one directory to mount per container, none holding another
    /// identity's key or the CA key. `readable_keys` makes keys 0644, for
    /// containers that run as another user than the files' owner.
    pub fn export(
        &self,
        identities: &[Identity],
        to: &Path,
        readable_keys: bool,
    ) -> Result<(), DirError> {
        let ca_path = self.ca_path();
        let ca = fs::read_to_string(&ca_path).map_err(io(&ca_path))?;
        for &identity in identities {
            let out = TlsDir::new(to.join(identity.stem()));
            fs::create_dir_all(&out.path).map_err(io(&out.path))?;
            let read = |p: PathBuf| fs::read_to_string(&p).map_err(io(&p));
            let pair = Pair {
                cert_pem: read(self.cert_path(identity))?,
                key_pem: read(self.key_path(identity))?,
            };
            out.write(CA_FILE, &ca)?;
            out.write_pair(identity, &pair)?;
            if readable_keys {
                let key = out.key_path(identity);
                fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).map_err(io(&key))?;
            }
        }
        Ok(())
    }

    /// Writes a pair: key first, then certificate (a reader that sees the
    /// new key with the old certificate finds they do not match and keeps
    /// its current pair until the certificate follows).
    pub fn write_pair(&self, identity: Identity, pair: &Pair) -> Result<(), DirError> {
        self.write_key(&identity.key_file(), &pair.key_pem)?;
        self.write(&identity.cert_file(), &pair.cert_pem)
    }

    fn write(&self, name: &str, text: &str) -> Result<(), DirError> {
        self.write_mode(name, text, 0o644)
    }

    fn write_key(&self, name: &str, text: &str) -> Result<(), DirError> {
        self.write_mode(name, text, 0o600)
    }

    /// Writes beside the file, then renames over it.
    fn write_mode(&self, name: &str, text: &str, mode: u32) -> Result<(), DirError> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        file.write_all(text.as_bytes()).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Runs `f` holding the directory's lock (a `.lock` directory), so that
    /// processes starting together make one CA, not one each.
    pub fn locked<T>(&self, f: impl FnOnce() -> Result<T, DirError>) -> Result<T, DirError> {
        fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let lock = self.path.join(".lock");
        let give_up = SystemTime::now() + Duration::from_secs(10);
        loop {
            match fs::create_dir(&lock) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if SystemTime::now() > give_up {
                        return Err(DirError::Locked {
                            path: lock.display().to_string(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(io(&lock)(e)),
            }
        }
        let result = f();
        let _ = fs::remove_dir(&lock);
        result
    }
}

/// The CERTIFICATE blocks of a PEM text, each with its armour lines.
pub fn pem_certificates(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}
