//! A minimal OpenTelemetry trace receiver for tests.
//!
//! `trace-sink` serves the OTLP/gRPC collector's `TraceService` (the one an
//! OpenTelemetry SDK exports to, `OTEL_EXPORTER_OTLP_ENDPOINT`) and appends
//! every span it receives to a file, one JSON object per line:
//!
//! ```json
//! {"service":"gateway","trace_id":"4bf9…","span_id":"00f0…","parent_span_id":null,
//!  "name":"anatomy.gateway.v1.Ledger/Deposit","kind":"server","status":"unset",
//!  "start_unix_nano":…,"end_unix_nano":…,"attributes":{"rpc.system":"grpc",…}}
//! ```
//!
//! Ids are lowercase hex; `parent_span_id` is `null` for a root span;
//! `service` is the resource's `service.name`. The end-to-end test
//! `scripts/e2e/tracing.sh` points the local cluster at it and reads the
//! file back. It is not a collector: no batching, no other signals, no
//! retention — every span goes straight to the file.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as AnyValueMessage, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The command line. Every flag has an `ANATOMY_TRACE_SINK_*` env twin.
#[derive(Debug, Clone, Parser)]
#[command(name = "trace-sink", version, about, long_about = None)]
pub struct Cli {
    /// Where to serve OTLP/gRPC (port 0: any free port; the log line says which).
    #[arg(
        long,
        env = "ANATOMY_TRACE_SINK_LISTEN",
        default_value = "127.0.0.1:4317"
    )]
    pub listen: SocketAddr,

    /// The file every received span is appended to, one JSON line each.
    #[arg(long, env = "ANATOMY_TRACE_SINK_OUT")]
    pub out: PathBuf,
}

/// Why the sink could not run.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// One received span, as written to the output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The resource's `service.name` (`unknown_service` if it has none).
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    /// `unset`, `ok` or `error`.
    pub status: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The span's attributes, values as JSON (bytes as hex).
    pub attributes: Map<String, Value>,
}

/// Every span of an export request, flattened, with its service.
pub fn records(request: &ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "unknown_service".to_owned());
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                out.push(SpanRecord {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty()
                        && span.parent_span_id.iter().any(|b| *b != 0))
                    .then(|| hex(&span.parent_span_id)),
                    name: span.name.clone(),
                    kind: kind_name(span.kind).to_owned(),
                    status: status_name(span.status.as_ref().map_or(0, |s| s.code)).to_owned(),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    out
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        Ok(SpanKind::Unspecified) | Err(_) => "unspecified",
    }
}

fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "ok",
        Ok(StatusCode::Error) => "error",
        Ok(StatusCode::Unset) | Err(_) => "unset",
    }
}

fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
        .collect()
}

fn json(value: &AnyValueMessage) -> Value {
    match &value.value {
        None => Value::Null,
        Some(AnyValue::StringValue(s)) => Value::String(s.clone()),
        Some(AnyValue::BoolValue(b)) => Value::Bool(*b),
        Some(AnyValue::IntValue(i)) => Value::from(*i),
        // NaN and the infinities have no JSON number: written as text.
        Some(AnyValue::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(AnyValue::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(AnyValue::KvlistValue(l)) => Value::Object(attributes(&l.values)),
        Some(AnyValue::BytesValue(b)) => Value::String(hex(b)),
        // Profiles only; meaningless for a span.
        Some(AnyValue::StringValueStrindex(i)) => Value::from(*i),
    }
}

/// Lowercase hex, as trace and span ids are written everywhere else.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The `TraceService`: appends what it receives to the output file.
#[derive(Debug)]
pub struct Sink {
    out: Mutex<File>,
}

impl Sink {
    /// A sink appending to `path` (created if missing).
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            out: Mutex::new(out),
        })
    }

    /// Writes the spans of one export as JSON lines, in one write, so that
    /// a reader never sees half a line.
    fn append(&self, spans: &[SpanRecord]) -> Result<(), Status> {
        let mut text = String::new();
        for span in spans {
            let line = serde_json::to_string(span)
                .map_err(|e| Status::internal(format!("cannot encode a span: {e}")))?;
            text.push_str(&line);
            text.push('\n');
        }
        let mut out = self
            .out
            .lock()
            .map_err(|_| Status::internal("an earlier write panicked"))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Status::internal(format!("cannot write the spans: {e}")))
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = records(request.get_ref());
        tracing::debug!(spans = spans.len(), "export");
        self.append(&spans)?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves `sink` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    sink: Sink,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SinkError> {
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Runs the sink the command line describes until SIGINT or SIGTERM.
pub async fn run(cli: Cli) -> Result<(), SinkError> {
    let sink = Sink::create(&cli.out)?;
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|source| SinkError::Bind {
            addr: cli.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SinkError::Bind {
        addr: cli.listen,
        source,
    })?;
    tracing::info!(%addr, out = %cli.out.display(), "trace-sink listening");
    serve(listener, sink, shutdown_signal()).await?;
    tracing::info!("trace-sink stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    fn kv(key: &str, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValueMessage { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff, 0x10]), "000aff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn flattens_resources_scopes_and_attributes() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", AnyValue::StringValue("gw".into()))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            parent_span_id: vec![3; 8],
                            name: "a".into(),
                            kind: SpanKind::Server as i32,
                            attributes: vec![
                                kv("s", AnyValue::StringValue("x".into())),
                                kv("i", AnyValue::IntValue(7)),
                                kv("b", AnyValue::BoolValue(true)),
                                kv("d", AnyValue::DoubleValue(f64::NAN)),
                                kv(
                                    "a",
                                    AnyValue::ArrayValue(ArrayValue {
                                        values: vec![AnyValueMessage {
                                            value: Some(AnyValue::IntValue(1)),
                                        }],
                                    }),
                                ),
                            ],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            trace_id: vec![1; 16],
                            span_id: vec![4; 8],
                            parent_span_id: vec![],
                            kind: 42,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        let spans = records(&request);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].service, "gw");
        assert_eq!(spans[0].trace_id, "01".repeat(16));
        assert_eq!(spans[0].span_id, "02".repeat(8));
        assert_eq!(spans[0].parent_span_id.as_deref(), Some("0303030303030303"));
        assert_eq!(spans[0].kind, "server");
        assert_eq!(spans[0].status, "unset");
        let attrs = Value::Object(spans[0].attributes.clone());
        assert_eq!(
            attrs,
            serde_json::json!({"s": "x", "i": 7, "b": true, "d": "NaN", "a": [1]})
        );
        assert_eq!(spans[1].service, "unknown_service");
        assert_eq!(spans[1].parent_span_id, None);
        assert_eq!(spans[1].kind, "unspecified");
    }
}
