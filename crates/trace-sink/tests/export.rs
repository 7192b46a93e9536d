//! The sink on a real socket: spans exported over OTLP/gRPC, by a raw
//! client and by the OpenTelemetry SDK's own exporter, land in the file.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use opentelemetry::KeyValue as OtelKeyValue;
use opentelemetry::trace::{
    Span as _, SpanKind as OtelSpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as AnyValueMessage, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use trace_sink::{Sink, SpanRecord};

/// Starts a sink on a free port writing to `out`; returns its address and
/// the sender that stops it.
async fn start(out: &Path) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = Sink::create(out).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        trace_sink::serve(listener, sink, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

fn read(out: &Path) -> Vec<SpanRecord> {
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValueMessage {
            value: Some(AnyValue::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_raw_export_lands_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (addr, stop) = start(&out).await;

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "gateway")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: (1..=16).collect(),
                    span_id: (1..=8).collect(),
                    parent_span_id: vec![0xab; 8],
                    name: "anatomy.gateway.v1.Ledger/Deposit".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: 10,
                    end_time_unix_nano: 20,
                    attributes: vec![kv("rpc.system", "grpc"), kv("rpc.method", "Deposit")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    client.export(request).await.unwrap();

    let spans = read(&out);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.service, "gateway");
    assert_eq!(span.trace_id, "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(span.span_id, "0102030405060708");
    assert_eq!(span.parent_span_id.as_deref(), Some("abababababababab"));
    assert_eq!(span.name, "anatomy.gateway.v1.Ledger/Deposit");
    assert_eq!(span.kind, "server");
    assert_eq!((span.start_unix_nano, span.end_unix_nano), (10, 20));
    assert_eq!(span.attributes["rpc.system"], "grpc");
    assert_eq!(span.attributes["rpc.method"], "Deposit");
    let _ = stop.send(());
}

/// What the services do: the SDK's batch exporter over tonic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_exporter_is_understood() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (addr, stop) = start(&out).await;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{addr}"))
        .with_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("business")
                .build(),
        )
        .build();
    let tracer = provider.tracer("test");
    let (trace_id, parent_id) = tracer.in_span("parent", |cx| {
        let parent = cx.span().span_context().clone();
        let mut child = tracer
            .span_builder("anatomy.business.v1.Ledger/Deposit")
            .with_kind(OtelSpanKind::Server)
            .with_attributes([OtelKeyValue::new("rpc.system", "grpc")])
            .start_with_context(&tracer, &cx);
        child.end();
        (parent.trace_id().to_string(), parent.span_id().to_string())
    });
    // The batch processor exports on its own thread; flushing blocks.
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();

    let spans = read(&out);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let child = spans
        .iter()
        .find(|s| s.name == "anatomy.business.v1.Ledger/Deposit")
        .unwrap();
    let parent = spans.iter().find(|s| s.name == "parent").unwrap();
    assert_eq!(child.service, "business");
    assert_eq!(child.kind, "server");
    assert_eq!(child.trace_id, trace_id);
    assert_eq!(child.parent_span_id.as_deref(), Some(parent_id.as_str()));
    assert_eq!(child.attributes["rpc.system"], "grpc");
    assert_eq!(parent.span_id, parent_id);
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(parent.kind, "internal");
    let _ = stop.send(());
}
