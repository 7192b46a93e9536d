//! The `anatomy-certs` command line. Every flag has an `ANATOMY_*` env twin.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{DirError, Identity, LeafOptions, TlsDir, cluster_identities};

/// Anatomy's development certificates: a cluster CA and one certificate
/// per service identity (gateway, business, operator, each storage
/// replica), in the layout every Anatomy process reads: ca.pem (the trust
/// bundle), ca.key, and <identity>.pem + <identity>.key.
#[derive(Debug, Parser)]
#[command(name = "anatomy-certs", bin_name = "anatomy-certs", version, about, long_about = None)]
pub struct Cli {
    /// The TLS directory.
    #[arg(
        long,
        env = "ANATOMY_TLS_DIR",
        default_value = ".anatomy/tls",
        global = true
    )]
    pub dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the CA (unless there is one) and every missing pair of a
    /// cluster: gateway, business, operator, storage-s<s>-r<r>.
    Init {
        /// Storage shards.
        #[arg(long, env = "ANATOMY_SHARDS", default_value_t = 1)]
        shards: u32,
        /// Replicas per shard.
        #[arg(long, env = "ANATOMY_REPLICAS", default_value_t = 1)]
        replicas: u64,
        #[command(flatten)]
        leaf: LeafArgs,
    },
    /// (Re)issue the named identities now (e.g. storage-s0-r1 operator).
    Issue {
        /// Identities, as stems (storage-s0-r1) or URIs.
        #[arg(required = true)]
        identities: Vec<Identity>,
        #[command(flatten)]
        leaf: LeafArgs,
    },
    /// Re-issue every pair in the directory (rotation): new keys, new
    /// certificates from the signing CA, the same names.
    Renew {
        #[command(flatten)]
        leaf: LeafArgs,
    },
    /// Start a CA rollover: a new signing CA, trusted together with the old
    /// one (ca.pem then holds both). Wait until every process has reloaded
    /// ca.pem, then `renew`, then `ca-retire`.
    CaRollover,
    /// End a CA rollover: trust only the CA that signs now.
    CaRetire,
    /// Copy each identity's ca.pem and pair to <to>/<identity>/ (one
    /// directory to mount per container; no CA key, no other identity's key).
    Export {
        /// Where the per-identity directories go.
        #[arg(long, env = "ANATOMY_TLS_EXPORT_TO")]
        to: PathBuf,
        /// Make the exported keys readable by other users (0644), for
        /// containers running as another user than the files' owner.
        #[arg(long, env = "ANATOMY_TLS_READABLE_KEYS")]
        readable_keys: bool,
    },
    /// List the identities that have a pair.
    List,
}

/// What leaf certificates say besides their identity.
#[derive(Debug, Args)]
pub struct LeafArgs {
    /// Extra DNS names or IP addresses for every certificate issued now
    /// (besides localhost and 127.0.0.1); comma-separated or repeated.
    #[arg(long = "san", env = "ANATOMY_CERT_SANS", value_delimiter = ',')]
    pub names: Vec<String>,

    /// Days a new certificate is valid.
    #[arg(long, env = "ANATOMY_CERT_DAYS", default_value_t = 365)]
    pub days: u64,
}

impl LeafArgs {
    fn options(&self) -> LeafOptions {
        LeafOptions {
            names: self.names.clone(),
            valid_for: Duration::from_secs(self.days.max(1) * 24 * 3600),
        }
    }
}

fn stems(ids: &[Identity]) -> String {
    ids.iter().map(Identity::stem).collect::<Vec<_>>().join(" ")
}

/// Runs a command; returns what to print.
pub fn run(cli: &Cli) -> Result<String, DirError> {
    let dir = TlsDir::new(&cli.dir);
    let shown = cli.dir.display();
    Ok(match &cli.command {
        Command::Init {
            shards,
            replicas,
            leaf,
        } => {
            let made =
                dir.locked(|| dir.init(&cluster_identities(*shards, *replicas), &leaf.options()))?;
            if made.is_empty() {
                format!("{shown}: every pair exists")
            } else {
                format!("{shown}: issued {}", stems(&made))
            }
        }
        Command::Issue { identities, leaf } => {
            dir.locked(|| dir.issue(identities, &leaf.options()))?;
            format!("{shown}: issued {}", stems(identities))
        }
        Command::Renew { leaf } => {
            let renewed = dir.locked(|| dir.renew(&leaf.options()))?;
            format!("{shown}: renewed {}", stems(&renewed))
        }
        Command::CaRollover => {
            dir.locked(|| dir.rollover_ca())?;
            format!("{shown}: new signing CA; ca.pem trusts the new and the old CA")
        }
        Command::CaRetire => {
            let dropped = dir.locked(|| dir.retire_old_cas())?;
            format!("{shown}: ca.pem trusts only the signing CA ({dropped} retired)")
        }
        Command::Export { to, readable_keys } => {
            let ids = dir.identities()?;
            dir.export(&ids, to, *readable_keys)?;
            format!("exported {} to {}/<identity>/", stems(&ids), to.display())
        }
        Command::List => stems(&dir.identities()?),
    })
}
