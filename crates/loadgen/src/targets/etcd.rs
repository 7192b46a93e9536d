//! etcd, over its own v3 gRPC API (`etcdserverpb.KV/Put` and `Range`), with
//! the same keys, values and concurrency as the storage target. Requests go
//! round-robin over the endpoints, as etcd's own client does; followers
//! forward writes to the leader, and a Range is linearizable (read index)
//! unless asked to be serializable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{kind, value};
use crate::runner::Target;
use crate::targets::storage::{Op, mix};

/// The generated etcd client (a subset of etcd's API).
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

/// The etcd target.
#[derive(Debug)]
pub struct Etcd {
    clients: Vec<pb::kv_client::KvClient<Channel>>,
    next: AtomicUsize,
    pub op: Op,
    pub value_size: usize,
    pub keys: u64,
    pub offset: u64,
    pub timeout: Duration,
}

impl Etcd {
    /// Connects (lazily) to every endpoint (`host:port`).
    pub fn new(
        endpoints: &[String],
        op: Op,
        value_size: usize,
        keys: u64,
        timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let clients = endpoints
            .iter()
            .map(|e| {
                Ok(pb::kv_client::KvClient::new(
                    Endpoint::from_shared(format!("http://{e}"))?
                        .tcp_nodelay(true)
                        .connect_lazy(),
                ))
            })
            .collect::<Result<_, tonic::transport::Error>>()?;
        Ok(Self {
            clients,
            next: AtomicUsize::new(0),
            op,
            value_size,
            keys,
            offset: 0,
            timeout,
        })
    }

    /// The same connections, doing `op` with keys numbered from `offset`.
    pub fn with(&self, op: Op, offset: u64) -> Self {
        Self {
            clients: self.clients.clone(),
            next: AtomicUsize::new(0),
            op,
            offset,
            ..*self
        }
    }

    fn client(&self) -> pb::kv_client::KvClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len().max(1);
        self.clients[i].clone()
    }

    /// Writes key `n`.
    pub async fn put(&self, n: u64) -> Result<(), String> {
        let mut request = tonic::Request::new(pb::PutRequest {
            key: format!("bench/{n}").into_bytes().into(),
            value: value(self.value_size, n).into(),
            ..Default::default()
        });
        request.set_timeout(self.timeout);
        self.client()
            .put(request)
            .await
            .map(|_| ())
            .map_err(|s| kind(&s))
    }

    async fn get(&self, n: u64) -> Result<(), String> {
        let key = format!("bench/{}", mix(n) % self.keys.max(1));
        let mut request = tonic::Request::new(pb::RangeRequest {
            key: key.into_bytes().into(),
            ..Default::default()
        });
        request.set_timeout(self.timeout);
        let response = self.client().range(request).await.map_err(|s| kind(&s))?;
        if response.into_inner().kvs.is_empty() {
            return Err("missing key (preload first)".into());
        }
        Ok(())
    }
}

impl Target for Etcd {
    async fn call(&self, n: u64) -> Result<(), String> {
        match self.op {
            Op::Put => self.put(self.offset + n).await,
            Op::Get => self.get(n).await,
        }
    }
}
