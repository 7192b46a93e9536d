//! The TLS flags of services and of tools. Every flag has an `ANATOMY_*`
//! env twin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anatomy_certs::Identity;
use clap::{ArgAction, Args};

use super::material::TlsError;
use super::transport::Transport;
use crate::cli::parse_duration;

/// Where a service finds its certificate, and whether it uses one.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Directory with the cluster's CAs (ca.pem, one or more) and this
    /// service's certificate and key (<identity>.pem, <identity>.key; the
    /// identity is gateway, business or storage-s<shard>-r<replica>).
    /// Re-read when the files change (no restart; mount Kubernetes Secrets
    /// as directories, not with subPath).
    #[arg(long, env = "ANATOMY_TLS_DIR", default_value = ".anatomy/tls")]
    pub tls_dir: PathBuf,

    /// When this service has no certificate in --tls-dir, make
    /// development certificates there (a CA unless ca.pem exists, and the
    /// gateway, business, operator and own pairs): what a bare `cargo run`
    /// needs. Compose and Kubernetes set it to false and mount real ones.
    #[arg(long, env = "ANATOMY_TLS_DEV_CERTS", default_value_t = true, action = ArgAction::Set)]
    pub tls_dev_certs: bool,

    #[command(flatten)]
    pub common: CommonTlsArgs,
}

/// TLS flags services and tools share.
#[derive(Debug, Clone, Args)]
pub struct CommonTlsArgs {
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "ANATOMY_TLS_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub tls_reload_interval: Duration,

    /// No TLS on internal connections: plaintext, no identities, no
    /// authorization — anyone who can connect may call anything. Only for
    /// measuring what TLS costs (docs/benchmarks.md); every process of the
    /// cluster must agree. Never in production.
    #[arg(long, env = "ANATOMY_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
}

impl TlsArgs {
    /// The transport of a service that is `me`.
    pub fn transport(&self, me: Identity) -> Result<Transport, TlsError> {
        self.common.transport(&self.tls_dir, me, self.tls_dev_certs)
    }
}

impl CommonTlsArgs {
    /// The transport of `me` with the files in `dir`.
    pub fn transport(
        &self,
        dir: &Path,
        me: Identity,
        dev_certs: bool,
    ) -> Result<Transport, TlsError> {
        if self.insecure_plaintext {
            tracing::warn!(
                "--insecure-plaintext: internal connections are NOT authenticated or encrypted"
            );
            return Ok(Transport::Plaintext);
        }
        Transport::mtls(dir, me, self.tls_reload_interval, dev_certs)
    }
}

/// How a tool (loadgen, admin tooling) reaches storage: as the operator,
/// with the certificates beside the shard map unless told otherwise.
#[derive(Debug, Clone, Args)]
pub struct ToolTlsArgs {
    /// Directory with ca.pem, operator.pem and operator.key. Default:
    /// `tls/` beside the shard map (what scripts/up.sh makes:
    /// .anatomy/shard-map.toml → .anatomy/tls/), or .anatomy/tls without one.
    #[arg(long, env = "ANATOMY_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,

    #[command(flatten)]
    pub common: CommonTlsArgs,
}

impl ToolTlsArgs {
    /// The TLS directory: --tls-dir, else `tls/` beside `shard_map`, else
    /// `.anatomy/tls`.
    pub fn dir(&self, shard_map: Option<&Path>) -> PathBuf {
        if let Some(dir) = &self.tls_dir {
            return dir.clone();
        }
        match shard_map.and_then(Path::parent) {
            Some(parent) => parent.join("tls"),
            None => PathBuf::from(".anatomy/tls"),
        }
    }

    /// The operator's transport.
    pub fn transport(&self, shard_map: Option<&Path>) -> Result<Transport, TlsError> {
        self.common
            .transport(&self.dir(shard_map), Identity::Operator, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_look_beside_the_shard_map() {
        let args = ToolTlsArgs {
            tls_dir: None,
            common: CommonTlsArgs {
                tls_reload_interval: Duration::from_secs(1),
                insecure_plaintext: false,
            },
        };
        assert_eq!(
            args.dir(Some(Path::new(".anatomy/shard-map.toml"))),
            PathBuf::from(".anatomy/tls")
        );
        assert_eq!(
            args.dir(Some(Path::new("/x/e2e/map.toml"))),
            PathBuf::from("/x/e2e/tls")
        );
        assert_eq!(args.dir(None), PathBuf::from(".anatomy/tls"));
        // A bare file name: its parent is "", so tls/ in the current directory.
        assert_eq!(args.dir(Some(Path::new("map.toml"))), PathBuf::from("tls"));
    }
}
