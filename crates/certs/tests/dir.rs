//! The TLS directory on real files: init, renew, CA rollover, export, and
//! the development default.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use anatomy_certs::dir::pem_certificates;
use anatomy_certs::{Identity, LeafOptions, TlsDir, cluster_identities, ensure_dev};

fn options() -> LeafOptions {
    LeafOptions::default()
}

#[test]
fn init_makes_every_pair_once_and_keys_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TlsDir::new(tmp.path().join("tls"));
    let all = cluster_identities(2, 3);
    assert_eq!(all.len(), 9);
    assert_eq!(dir.init(&all, &options()).unwrap(), all);
    assert_eq!(dir.identities().unwrap().len(), 9);
    let ca = fs::read(dir.ca_path()).unwrap();
    let cert = fs::read(dir.cert_path(Identity::storage(1, 3))).unwrap();
    assert!(
        dir.init(&all, &options()).unwrap().is_empty(),
        "nothing missing"
    );
    assert_eq!(fs::read(dir.ca_path()).unwrap(), ca, "the CA is kept");
    assert_eq!(
        fs::read(dir.cert_path(Identity::storage(1, 3))).unwrap(),
        cert
    );
    let mode = fs::metadata(dir.key_path(Identity::Operator))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn renew_replaces_keys_and_keeps_extra_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TlsDir::new(tmp.path());
    let with_name = LeafOptions {
        names: vec!["business.anatomy.svc".into()],
        ..options()
    };
    dir.init(&[Identity::Business], &with_name).unwrap();
    let key = fs::read(dir.key_path(Identity::Business)).unwrap();
    dir.renew(&options()).unwrap();
    assert_ne!(fs::read(dir.key_path(Identity::Business)).unwrap(), key);
    let cert = fs::read_to_string(dir.cert_path(Identity::Business)).unwrap();
    assert_eq!(
        anatomy_certs::names::extra_names(&cert),
        vec!["business.anatomy.svc".to_string()]
    );
}

#[test]
fn rollover_trusts_both_cas_until_retired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TlsDir::new(tmp.path());
    dir.init(&[Identity::Gateway], &options()).unwrap();
    let old = dir.bundle().unwrap();
    dir.rollover_ca().unwrap();
    let both = dir.bundle().unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(
        both[1], old[0],
        "the old CA stays trusted, after the new one"
    );
    assert_eq!(
        dir.authority().unwrap().cert_pem(),
        both[0],
        "the new one signs"
    );
    assert_eq!(dir.retire_old_cas().unwrap(), 1);
    assert_eq!(dir.bundle().unwrap(), vec![both[0].clone()]);
}

#[test]
fn export_gives_each_identity_only_its_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TlsDir::new(tmp.path().join("tls"));
    dir.init(&cluster_identities(1, 1), &options()).unwrap();
    let out = tmp.path().join("out");
    dir.export(&dir.identities().unwrap(), &out, true).unwrap();
    let mut files: Vec<String> = fs::read_dir(out.join("storage-s0-r1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["ca.pem", "storage-s0-r1.key", "storage-s0-r1.pem"]);
    let mode = fs::metadata(out.join("storage-s0-r1/storage-s0-r1.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn dev_default_shares_one_ca_and_never_replaces_a_foreign_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TlsDir::new(tmp.path().join("tls"));
    let made = ensure_dev(&dir, Identity::storage(0, 1)).unwrap();
    assert!(made.contains(&Identity::Operator) && made.contains(&Identity::storage(0, 1)));
    let ca = fs::read(dir.ca_path()).unwrap();
    assert_eq!(ensure_dev(&dir, Identity::Business).unwrap(), vec![]);
    assert_eq!(
        ensure_dev(&dir, Identity::storage(2, 1)).unwrap(),
        vec![Identity::storage(2, 1)]
    );
    assert_eq!(fs::read(dir.ca_path()).unwrap(), ca, "one CA for all");

    // A directory with someone's trust bundle but no CA key: refuse, keep it.
    let foreign = TlsDir::new(tmp.path().join("mounted"));
    fs::create_dir_all(foreign.path()).unwrap();
    fs::write(foreign.ca_path(), &ca).unwrap();
    let err = ensure_dev(&foreign, Identity::Gateway).unwrap_err();
    assert!(err.to_string().contains("anatomy-certs init"), "{err}");
    assert_eq!(fs::read(foreign.ca_path()).unwrap(), ca);
}

#[test]
fn splits_pem_bundles() {
    let one = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n";
    let two = format!("{one}junk\n{one}");
    assert_eq!(pem_certificates(&two).len(), 2);
    assert!(pem_certificates("nothing").is_empty());
}
