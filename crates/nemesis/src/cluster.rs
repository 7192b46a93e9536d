//! The local cluster's storage replicas as processes: scripts/up.sh starts
//! each with a pid file (`<dir>/run/<name>.pid`) and a log
//! (`<dir>/logs/<name>.log`). The nemesis kills, stops and continues them
//! by pid, and restarts a killed one with the command line, environment
//! and working directory it read from `/proc` before killing it, so a
//! restart is exactly the process that was there.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use storage_api::shard_map::{ReplicaId, ShardId, ShardMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::NemesisError;

/// The process name scripts/up.sh gives replica `replica` of `shard`.
pub fn replica_name(shard: ShardId, replica: ReplicaId) -> String {
    format!("storage-s{shard}-r{replica}")
}

/// One storage replica.
#[derive(Debug, Clone)]
pub struct Replica {
    pub shard: ShardId,
    pub name: String,
}

/// What a replica's metrics say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub leader: bool,
    pub term: u64,
}

/// How a process was started, to start it again.
#[derive(Debug)]
struct Launch {
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
}

/// The cluster in a state directory.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    pub map: ShardMap,
    pub replicas: Vec<Replica>,
    launches: Mutex<HashMap<String, Launch>>,
}

fn setup(what: String) -> NemesisError {
    NemesisError::Setup(what)
}

impl Cluster {
    /// Reads the cluster's shard map (`<dir>/shard-map.toml`).
    pub fn load(dir: &Path) -> Result<Self, NemesisError> {
        let path = dir.join("shard-map.toml");
        let map = ShardMap::load(&path).map_err(|e| {
            setup(format!(
                "{}: {e} (start the cluster's layout with scripts/up.sh --layout-only)",
                path.display()
            ))
        })?;
        let replicas = map
            .shards
            .iter()
            .flat_map(|s| {
                s.replicas.iter().map(|r| Replica {
                    shard: s.id,
                    name: replica_name(s.id, r.id),
                })
            })
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            map,
            replicas,
            launches: Mutex::new(HashMap::new()),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The replicas of `shard`.
    pub fn replicas_of(&self, shard: ShardId) -> Vec<&Replica> {
        self.replicas.iter().filter(|r| r.shard == shard).collect()
    }

    /// The pid in `name`'s pid file.
    pub fn pid(&self, name: &str) -> Result<i32, NemesisError> {
        let path = self.dir.join("run").join(format!("{name}.pid"));
        let text = std::fs::read_to_string(&path)
            .map_err(NemesisError::io(format!("read {}", path.display())))?;
        text.trim()
            .parse()
            .map_err(|_| setup(format!("{}: not a pid: {text:?}", path.display())))
    }

    /// A flag's value on `name`'s command line (`--flag value` or `--flag=value`).
    pub fn flag(&self, name: &str, flag: &str) -> Option<String> {
        let argv = cmdline(self.pid(name).ok()?).ok()?;
        let args: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let prefix = format!("{flag}=");
        args.iter().enumerate().find_map(|(i, a)| {
            if a == flag {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&prefix).map(str::to_string)
            }
        })
    }

    /// `name`'s data directory (its `--data-dir`, else up.sh's default).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.flag(name, "--data-dir")
            .map_or_else(|| self.dir.join("data").join(name), PathBuf::from)
    }

    /// kill -9: remembers how `name` was started, kills it, and waits
    /// until it is gone.
    pub async fn kill(&self, name: &str) -> Result<(), NemesisError> {
        let pid = self.pid(name)?;
        let launch = Launch {
            argv: cmdline(pid).map_err(NemesisError::io(format!("read {name}'s command line")))?,
            env: environ(pid).map_err(NemesisError::io(format!("read {name}'s environment")))?,
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map_err(NemesisError::io(format!("read {name}'s working directory")))?,
        };
        self.launches
            .lock()
            .map_err(|_| setup("launches lock poisoned".into()))?
            .insert(name.to_string(), launch);
        signal(pid, Signal::KILL)?;
        for _ in 0..250 {
            if !alive(pid) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(setup(format!(
            "{name} (pid {pid}) did not die within 5 s of SIGKILL"
        )))
    }

    /// Starts a killed `name` again, as it was, appending to its log, and
    /// writes its new pid file.
    pub fn restart(&self, name: &str) -> Result<(), NemesisError> {
        let launch = self
            .launches
            .lock()
            .map_err(|_| setup("launches lock poisoned".into()))?
            .remove(name)
            .ok_or_else(|| {
                setup(format!(
                    "{name} was not killed by the nemesis: no command line to restart it with"
                ))
            })?;
        let log_path = self.dir.join("logs").join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(NemesisError::io(format!("open {}", log_path.display())))?;
        let err_log = log
            .try_clone()
            .map_err(NemesisError::io("clone the log handle"))?;
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| setup(format!("{name} had an empty command line")))?;
        let child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(launch.env)
            .current_dir(&launch.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err_log)
            // Its own process group: a Ctrl-C meant for the nemesis does
            // not reach the cluster (as with up.sh's nohup).
            .process_group(0)
            .spawn()
            .map_err(NemesisError::io(format!("restart {name}")))?;
        let pid = child
            .id()
            .ok_or_else(|| setup(format!("{name} exited at once")))?;
        let pid_file = self.dir.join("run").join(format!("{name}.pid"));
        std::fs::write(&pid_file, format!("{pid}\n"))
            .map_err(NemesisError::io(format!("write {}", pid_file.display())))?;
        // Dropped, tokio reaps the child when it exits.
        drop(child);
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&self, name: &str) -> Result<(), NemesisError> {
        signal(self.pid(name)?, Signal::STOP)
    }

    /// SIGCONT.
    pub fn resume(&self, name: &str) -> Result<(), NemesisError> {
        signal(self.pid(name)?, Signal::CONT)
    }

    /// What `name`'s metrics say (None: not answering within 500 ms).
    pub async fn role(&self, name: &str) -> Option<Role> {
        let addr = self.flag(name, "--metrics-listen")?;
        let text = tokio::time::timeout(Duration::from_millis(500), scrape(&addr))
            .await
            .ok()??;
        Some(Role {
            leader: gauge(&text, "raft_is_leader")? >= 1.0,
            term: gauge(&text, "raft_term")? as u64,
        })
    }

    /// The replica of `shard` that says it leads, in the highest term.
    pub async fn leader(&self, shard: ShardId) -> Option<String> {
        let mut best: Option<(u64, String)> = None;
        for replica in self.replicas_of(shard) {
            if let Some(role) = self.role(&replica.name).await
                && role.leader
                && best.as_ref().is_none_or(|(term, _)| role.term > *term)
            {
                best = Some((role.term, replica.name.clone()));
            }
        }
        best.map(|(_, name)| name)
    }

    /// Every replica answers its metrics and every shard has a leader.
    pub async fn serving(&self) -> bool {
        for replica in &self.replicas {
            if self.role(&replica.name).await.is_none() {
                return false;
            }
        }
        for shard in &self.map.shards {
            if self.leader(shard.id).await.is_none() {
                return false;
            }
        }
        true
    }
}

fn signal(pid: i32, sig: Signal) -> Result<(), NemesisError> {
    let target = Pid::from_raw(pid).ok_or_else(|| setup(format!("bad pid {pid}")))?;
    kill_process(target, sig).map_err(|e| NemesisError::Io {
        doing: format!("send {sig:?} to pid {pid}"),
        source: e.into(),
    })
}

/// Running (a zombie counts as gone: it is only waiting to be reaped).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn nul_separated(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| OsString::from_vec(part.to_vec()))
        .collect()
}

fn cmdline(pid: i32) -> std::io::Result<Vec<OsString>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(nul_separated)
}

fn environ(pid: i32) -> std::io::Result<Vec<(OsString, OsString)>> {
    let vars = std::fs::read(format!("/proc/{pid}/environ")).map(nul_separated)?;
    Ok(vars
        .into_iter()
        .filter_map(|var| {
            let bytes = var.into_vec();
            let eq = bytes.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(bytes[..eq].to_vec()),
                OsString::from_vec(bytes[eq + 1..].to_vec()),
            ))
        })
        .collect())
}

/// GET http://<addr>/metrics (HTTP/1.0: the server closes when done).
async fn scrape(addr: &str) -> Option<String> {
    let mut conn = TcpStream::connect(addr).await.ok()?;
    conn.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut body = Vec::new();
    conn.read_to_end(&mut body).await.ok()?;
    String::from_utf8(body).ok()
}

/// The value of the first sample of `metric` in a Prometheus text page.
fn gauge(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gauges_with_or_without_labels() {
        let page = "# HELP raft_is_leader 1 while...\nraft_is_leader_x 7\nraft_is_leader{app=\"storage\",shard=\"0\"} 1\nraft_term 12\n";
        assert_eq!(gauge(page, "raft_is_leader"), Some(1.0));
        assert_eq!(gauge(page, "raft_term"), Some(12.0));
        assert_eq!(gauge(page, "raft_leader_id"), None);
    }

    #[test]
    fn splits_proc_lists() {
        let parts = nul_separated(b"storage\0--shard\x000\0".to_vec());
        assert_eq!(parts, ["storage", "--shard", "0"].map(OsString::from));
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not_a_process() {
        assert!(alive(i32::try_from(std::process::id()).unwrap_or(1)));
        assert!(!alive(0));
    }
}
