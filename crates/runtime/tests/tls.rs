//! Mutual TLS over real sockets with real certificate files: handshakes
//! that must fail, the peer identity reaching the request, rotation and a
//! CA rollover without restarting anything.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anatomy_certs::{Identity, LeafOptions, TlsDir, cluster_identities};
use anatomy_runtime::tls::store::{Reload, TlsPaths};
use anatomy_runtime::tls::transport::endpoint;
use anatomy_runtime::tls::{CertStore, PeerInfo, Transport, client::MtlsConnector};
use anatomy_runtime::{Health, Shutdown};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const SERVER: Identity = Identity::Storage {
    shard: 0,
    replica: 1,
};

fn cluster(path: &Path) -> TlsDir {
    let dir = TlsDir::new(path);
    dir.init(&cluster_identities(1, 2), &LeafOptions::default())
        .unwrap();
    dir
}

fn mtls(dir: &TlsDir, me: Identity) -> (Transport, Arc<CertStore>) {
    let store = CertStore::open(TlsPaths::in_dir(dir.path(), me), Some(me)).unwrap();
    (Transport::Mtls(store.clone()), store)
}

type Seen = Arc<Mutex<Vec<Option<Identity>>>>;

/// A health server on a loopback port that records each caller's identity.
async fn serve(transport: &Transport) -> (SocketAddr, Shutdown, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Health::new(&["x"]).await;
    health.set_serving(true).await;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let service = InterceptedService::new(health.service(), move |req: tonic::Request<()>| {
        let who = req.extensions().get::<PeerInfo>().and_then(|p| p.identity);
        record.lock().unwrap().push(who);
        Ok(req)
    });
    let shutdown = Shutdown::new();
    let serving = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(transport.incoming(listener).unwrap(), shutdown.wait());
    tokio::spawn(serving);
    (addr, shutdown, seen)
}

async fn check(channel: tonic::transport::Channel) -> Result<ServingStatus, tonic::Status> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: "".into() })
        .await?;
    Ok(reply.into_inner().status())
}

fn ep(addr: SocketAddr) -> tonic::transport::Endpoint {
    endpoint(&addr.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
}

async fn call(
    client: &Transport,
    addr: SocketAddr,
    expect: Identity,
) -> Result<ServingStatus, tonic::Status> {
    check(client.lazy_channel(ep(addr), expect).unwrap()).await
}

/// A client that trusts `ca_dir`'s CAs and presents `cert_dir`'s `who`
/// pair (or none), bypassing the checks our own stores make.
fn raw_client(ca_dir: &TlsDir, cert: Option<(&TlsDir, Identity)>) -> MtlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_dir.ca_path()).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(anatomy_runtime::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some((dir, who)) => {
            let chain = CertificateDer::pem_file_iter(dir.cert_path(who))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.key_path(who)).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    MtlsConnector::new(Arc::new(config))
}

#[tokio::test]
async fn only_clients_with_a_certificate_from_the_cluster_ca_get_in() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(&tmp.path().join("tls"));
    let foreign = cluster(&tmp.path().join("foreign"));
    let (server, _) = mtls(&dir, SERVER);
    let (addr, _stop, seen) = serve(&server).await;

    let (operator, _) = mtls(&dir, Identity::Operator);
    assert_eq!(
        call(&operator, addr, SERVER).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(*seen.lock().unwrap(), vec![Some(Identity::Operator)]);

    // The server's certificate is fine for a client that trusts the CA and
    // checks host names (localhost is in every certificate) ...
    let localhost = |c: MtlsConnector| {
        endpoint(&format!("localhost:{}", addr.port()))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect_with_connector_lazy(c)
    };
    // ... but without a client certificate, or with one from another CA,
    // the handshake fails and no request reaches the service.
    let none = check(localhost(raw_client(&dir, None))).await.unwrap_err();
    assert_tls_alert(&none, "CertificateRequired");
    let wrong_ca = check(localhost(raw_client(
        &dir,
        Some((&foreign, Identity::Operator)),
    )))
    .await
    .unwrap_err();
    assert_tls_alert(&wrong_ca, "UnknownCA");
    // Plaintext to a TLS port: refused too.
    let plain = check(ep(addr).connect_lazy()).await.unwrap_err();
    assert_ne!(plain.code(), tonic::Code::Ok);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "refused calls never reached the service"
    );
}

#[tokio::test]
async fn clients_reach_only_the_identity_they_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let (server, _) = mtls(&dir, SERVER);
    let (addr, _stop, _) = serve(&server).await;
    let (operator, _) = mtls(&dir, Identity::Operator);
    let wrong = call(&operator, addr, Identity::storage(0, 2))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unavailable);
    assert!(
        format!("{wrong:?}").contains("expected storage-s0-r2, the server is storage-s0-r1"),
        "{wrong:?}"
    );
}

#[test]
fn a_store_takes_a_new_pair_and_keeps_the_last_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let store = CertStore::open(TlsPaths::in_dir(dir.path(), SERVER), Some(SERVER)).unwrap();
    let cert = |s: &CertStore| s.current().key.cert[0].clone();
    let first = cert(&store);
    assert!(matches!(store.reload(), Reload::Unchanged));

    dir.issue(&[SERVER], &LeafOptions::default()).unwrap();
    assert!(matches!(store.reload(), Reload::Loaded));
    let second = cert(&store);
    assert_ne!(second, first);

    // A key that does not belong to the certificate: refused, old pair kept.
    std::fs::copy(dir.key_path(Identity::Operator), dir.key_path(SERVER)).unwrap();
    let Reload::Rejected(e) = store.reload() else {
        panic!("a mismatched pair was taken")
    };
    assert!(e.to_string().contains("does not belong"), "{e}");
    assert_eq!(cert(&store), second);
    // Unchanged bad files are not tried (nor logged) again.
    assert!(matches!(store.reload(), Reload::Unchanged));

    // Another identity's valid pair: refused.
    std::fs::copy(dir.cert_path(Identity::Operator), dir.cert_path(SERVER)).unwrap();
    let Reload::Rejected(e) = store.reload() else {
        panic!("another identity was taken")
    };
    assert!(
        e.to_string()
            .contains("names operator, but this process is storage-s0-r1"),
        "{e}"
    );

    // Garbage, then a missing file: refused; the good pair is still served.
    std::fs::write(dir.cert_path(SERVER), "not a certificate").unwrap();
    assert!(matches!(store.reload(), Reload::Rejected(_)));
    std::fs::remove_file(dir.cert_path(SERVER)).unwrap();
    assert!(matches!(store.reload(), Reload::Rejected(_)));
    assert_eq!(cert(&store), second);

    // A pair from a CA the bundle does not hold: refused.
    let foreign = cluster(&tmp.path().join("foreign"));
    std::fs::copy(foreign.cert_path(SERVER), dir.cert_path(SERVER)).unwrap();
    std::fs::copy(foreign.key_path(SERVER), dir.key_path(SERVER)).unwrap();
    let Reload::Rejected(e) = store.reload() else {
        panic!("an untrusted pair was taken")
    };
    assert!(e.to_string().contains("not signed by a CA"), "{e}");

    // Fixed: taken.
    dir.issue(&[SERVER], &LeafOptions::default()).unwrap();
    assert!(matches!(store.reload(), Reload::Loaded));
    assert_eq!(store.loads(), 3);
}

#[tokio::test]
async fn rotation_and_a_ca_rollover_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cluster(tmp.path());
    let (server, server_store) = mtls(&dir, SERVER);
    let (addr, _stop, _) = serve(&server).await;
    let (client, client_store) = mtls(&dir, Identity::Operator);
    let reload_all = || {
        for store in [&server_store, &client_store] {
            assert!(!matches!(store.reload(), Reload::Rejected(_)));
        }
    };
    let ok = || async {
        assert_eq!(
            call(&client, addr, SERVER).await.unwrap(),
            ServingStatus::Serving
        )
    };
    ok().await;

    // Step 1: a new CA, trusted with the old one; leaves still from the old.
    dir.rollover_ca().unwrap();
    reload_all();
    assert_eq!(server_store.current().roots.len(), 2);
    ok().await;
    // Keep a leaf of the old CA for later.
    let old = TlsDir::new(tmp.path().join("old"));
    std::fs::create_dir_all(old.path()).unwrap();
    for f in [
        dir.cert_path(Identity::Operator),
        dir.key_path(Identity::Operator),
    ] {
        std::fs::copy(&f, old.path().join(f.file_name().unwrap())).unwrap();
    }
    // Step 2: every leaf from the new CA; both sides still trust both.
    dir.renew(&LeafOptions::default()).unwrap();
    reload_all();
    ok().await;
    // Step 3: the old CA retired.
    dir.retire_old_cas().unwrap();
    reload_all();
    assert_eq!(server_store.current().roots.len(), 1);
    ok().await;
    // New connections with a certificate of the retired CA are refused.
    let refused = check(
        endpoint(&format!("localhost:{}", addr.port()))
            .unwrap()
            .timeout(Duration::from_secs(2))
            .connect_with_connector_lazy(raw_client(&dir, Some((&old, Identity::Operator)))),
    )
    .await
    .unwrap_err();
    assert_tls_alert(&refused, "UnknownCA");
}

/// The server ended the handshake with this TLS alert (with TLS 1.3 the
/// client learns it on its first read, as a transport error).
fn assert_tls_alert(status: &tonic::Status, alert: &str) {
    let text = format!("{status:?}");
    assert!(
        text.contains(&format!("received fatal alert: {alert}")),
        "{text}"
    );
}
