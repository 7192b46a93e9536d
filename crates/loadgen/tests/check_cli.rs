//! `loadgen check`'s exit status and output, through the real binary:
//! 0 linearizable, 1 not (naming the key and the evidence), 2 bad input or
//! undecided within --timeout.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn check(history: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("check")
        .arg(history)
        .args(extra)
        .output()
        .unwrap()
}

/// `n` sequential writes of 1..=n to key k, then a read returning `last`.
fn history(n: i64, last: i64) -> String {
    let mut lines = Vec::new();
    let mut time = 0;
    let mut event = |kind: &str, f: &str, value: String| {
        time += 1;
        lines.push(format!(
            r#"{{"process":0,"type":"{kind}","f":"{f}","key":"k","value":{value},"time":{time}}}"#
        ));
    };
    for v in 1..=n {
        event("invoke", "write", v.to_string());
        event("ok", "write", v.to_string());
    }
    event("invoke", "read", "null".into());
    event("ok", "read", last.to_string());
    lines.join("\n") + "\n"
}

#[test]
fn exit_status_says_linearizable_not_or_cannot_tell() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    let good = write("good.jsonl", &history(3, 3));
    let out = check(&good, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("linearizable: 1 keys, 4 operations"));

    let stale = write("stale.jsonl", &history(3, 2));
    let out = check(&stale, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"key "k" is not linearizable: these 3 operations"#),
        "{stdout}"
    );
    assert!(stdout.contains("read -> 2"), "{stdout}");

    let broken = write("broken.jsonl", "{\"process\":0,\"type\":\"ok\"\n");
    let out = check(&broken, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: not a history event"));

    let missing = check(&dir.path().join("missing.jsonl"), &[]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");

    // Long enough that the search looks at the clock (every 4096 steps).
    let long = write("long.jsonl", &history(5000, 5000));
    let out = check(&long, &["--timeout", "0s"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("undecided within --timeout"));
    assert_eq!(check(&long, &[]).status.code(), Some(0));
}
