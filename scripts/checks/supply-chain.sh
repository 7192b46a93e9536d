#!/usr/bin/env bash
# The supply chain: `cargo deny check` (advisories, licenses, bans,
# sources — crates.io only), configured in deny.toml.
#
# Advisories come from the RustSec database, fetched now when GitHub is
# reachable; otherwise from the snapshot in supply-chain/ (the output says
# which, and the snapshot's date). Then the check is checked: a scratch
# crate that depends on a version with known advisories (smallvec 1.6.0,
# RUSTSEC-2021-0003) must fail it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ROOT"

DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$DENY_VERSION"; then
  say "installing cargo-deny $DENY_VERSION (a debug build: quicker to build, fast enough here)"
  cargo install --locked --debug --quiet "cargo-deny@$DENY_VERSION"
fi

# Where cargo-deny keeps the database of its default URL
# (https://github.com/RustSec/advisory-db): <CARGO_HOME>/advisory-dbs/
# advisory-db-<hash of the URL>.
DB="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691"
SNAPSHOT="$ROOT/supply-chain/advisory-db.tar.gz"
OFFLINE=()
if timeout 60 cargo deny -L error fetch db >/dev/null 2>&1; then
  echo "advisories: the RustSec database as fetched now"
else
  rm -rf "$DB" && mkdir -p "$DB"
  tar -xzf "$SNAPSHOT" -C "$DB" --strip-components=1
  echo "advisories: GitHub is not reachable; using the offline snapshot supply-chain/advisory-db.tar.gz" \
    "(RustSec commit bf5c0d2, 2026-08-21: newer advisories are unknown)"
  OFFLINE=(--offline)
fi

# Offline, cargo deny reads the crate graph with `cargo metadata --offline`,
# which needs every package of the lockfile on disk — for every platform,
# also those a build here never downloads (android_system_properties ...).
# crates.io is reachable: fetch them all first.
cargo fetch --quiet --locked
cargo deny "${OFFLINE[@]}" --color never check

# The check of the check: a known-vulnerable version must fail it.
CANARY="$ROOT/target/deny-canary"
rm -rf "$CANARY" && mkdir -p "$CANARY/src"
cat >"$CANARY/Cargo.toml" <<'TOML'
[package]
name = "deny-canary"
version = "0.0.0"
edition = "2021"
publish = false
license = "MIT"

[dependencies]
smallvec = "=1.6.0"

[workspace]
TOML
: >"$CANARY/src/lib.rs"
cp deny.toml "$CANARY/"
cargo fetch --quiet --manifest-path "$CANARY/Cargo.toml"
if out=$(cargo deny "${OFFLINE[@]}" --color never --manifest-path "$CANARY/Cargo.toml" check advisories 2>&1); then
  die "cargo deny passed a crate with known advisories (smallvec 1.6.0): the advisory check is not working"
fi
if grep -q 'RUSTSEC-' <<<"$out"; then
  echo "ok: a known-vulnerable crate fails the check ($(grep -o 'RUSTSEC-[0-9-]*' <<<"$out" | sort -u | tr '\n' ' '))"
else
  printf '%s\n' "$out" | tail -20
  die "cargo deny failed on the canary, but not with an advisory"
fi
