//! Tenant isolation, as properties against the real thing: a business
//! service over a real 2-shard storage cluster (Raft, redb, mutual TLS),
//! called as the gateway would call it.
//!
//! 1. Tenant names that are prefixes of each other (`acme`, `acme.x`,
//!    `acme-1`, `acme_`) never see each other's accounts: listing a tenant
//!    gives exactly the accounts created in it, and reading an id created
//!    only in another tenant is NOT_FOUND.
//! 2. A forged page token (any string, or a real token of another tenant)
//!    is refused with INVALID_ARGUMENT or gives a page of the caller's own
//!    accounts — never another tenant's.

#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anatomy_runtime::tls::Identity;
use anatomy_runtime::tls::transport::endpoint;
use business_api::v1 as biz;
use business_api::v1::ledger_client::LedgerClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use system_tests::services::business;
use system_tests::{Cluster, fast_tuning};
use tokio::runtime::Runtime;
use tonic::Code;
use tonic::transport::Channel;

const TENANTS: [&str; 4] = ["acme", "acme.x", "acme-1", "acme_"];

struct Stack {
    runtime: Runtime,
    client: LedgerClient<Channel>,
    // Kept alive for the test's length.
    _cluster: Cluster,
    _business: system_tests::Service,
}

fn stack() -> Stack {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let (cluster, business, client) = runtime.block_on(async {
        let cluster = Cluster::start(2, 1, fast_tuning()).await;
        cluster.leader(0).await;
        cluster.leader(1).await;
        let args = cluster.business_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (service, addr) = business(&args, &[]).await;
        let channel = cluster
            .transport(Identity::Gateway)
            .lazy_channel(
                endpoint(&addr)
                    .expect("endpoint")
                    .timeout(Duration::from_secs(10)),
                Identity::Business,
            )
            .expect("channel");
        (cluster, service, LedgerClient::new(channel))
    });
    Stack {
        runtime,
        client,
        _cluster: cluster,
        _business: business,
    }
}

/// Each case works in its own account-id namespace.
fn case_prefix() -> String {
    static CASE: AtomicU32 = AtomicU32::new(0);
    format!("c{}-", CASE.fetch_add(1, Ordering::Relaxed))
}

async fn create(client: &mut LedgerClient<Channel>, tenant: &str, account: &str) {
    client
        .create_account(biz::CreateAccountRequest {
            tenant: tenant.into(),
            request_id: format!("create-{account}"),
            account_id: account.into(),
        })
        .await
        .expect("create account");
}

/// Every account id of `tenant` whose id starts with `prefix`, following
/// the pages.
async fn list_all(
    client: &mut LedgerClient<Channel>,
    tenant: &str,
    prefix: &str,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let page = client
            .list_accounts(biz::ListAccountsRequest {
                tenant: tenant.into(),
                page_size: 7,
                page_token: token,
            })
            .await
            .expect("list accounts")
            .into_inner();
        assert!(page.missing_shards.is_empty(), "every shard answers");
        for account in page.accounts {
            assert_eq!(account.tenant, tenant, "a listed account names its tenant");
            if account.account_id.starts_with(prefix) {
                seen.insert(account.account_id);
            }
        }
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
    panic!("listing {tenant} did not end in 1000 pages");
}

fn placements() -> impl Strategy<Value = Vec<(usize, String)>> {
    prop::collection::vec((0..TENANTS.len(), "[a-z0-9][a-z0-9_.-]{0,6}"), 1..10)
}

#[test]
fn tenants_never_see_each_other() {
    let stack = stack();
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&placements(), |placements| {
        let prefix = case_prefix();
        let mut client = stack.client.clone();
        let client = &mut client;
        stack.runtime.block_on(async {
            let mut created: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
            for (tenant, id) in &placements {
                let account = format!("{prefix}{id}");
                if created
                    .entry(TENANTS[*tenant])
                    .or_default()
                    .insert(account.clone())
                {
                    create(client, TENANTS[*tenant], &account).await;
                }
            }
            for tenant in TENANTS {
                let mine = created.get(tenant).cloned().unwrap_or_default();
                let listed = list_all(client, tenant, &prefix).await;
                prop_assert_eq!(
                    &listed,
                    &mine,
                    "tenant {} lists exactly its accounts",
                    tenant
                );
                for (other, theirs) in &created {
                    for account in theirs.difference(&mine) {
                        let got = client
                            .get_account(biz::GetAccountRequest {
                                tenant: tenant.into(),
                                account_id: account.clone(),
                            })
                            .await;
                        prop_assert_eq!(
                            got.map(drop).map_err(|s| s.code()),
                            Err(Code::NotFound),
                            "{} reads {}'s account {}",
                            tenant,
                            other,
                            account
                        );
                    }
                }
            }
            Ok(())
        })
    });
    result.expect("tenant isolation");
}

/// A page token: any string, or a real one of another tenant's listing.
fn tokens() -> impl Strategy<Value = (usize, Option<String>)> {
    (
        0..TENANTS.len(),
        prop_oneof![
            Just(None),
            any::<String>().prop_map(Some),
            "[A-Za-z0-9_=-]{0,40}".prop_map(Some),
        ],
    )
}

#[test]
fn forged_page_tokens_stay_inside_the_tenant() {
    let mut stack = stack();
    let prefix = case_prefix();
    let mut own: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut real_tokens = Vec::new();
    {
        let Stack {
            runtime, client, ..
        } = &mut stack;
        runtime.block_on(async {
            for tenant in TENANTS {
                for i in 0..5 {
                    let account = format!("{prefix}{i}");
                    create(client, tenant, &account).await;
                    own.entry(tenant).or_default().insert(account);
                }
                let page = client
                    .list_accounts(biz::ListAccountsRequest {
                        tenant: tenant.into(),
                        page_size: 2,
                        page_token: String::new(),
                    })
                    .await
                    .expect("first page")
                    .into_inner();
                assert!(
                    !page.next_page_token.is_empty(),
                    "{tenant} has a second page"
                );
                real_tokens.push(page.next_page_token);
            }
        });
    }
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&tokens(), |(caller, forged)| {
        let caller = TENANTS[caller];
        // None: a real token of the next tenant in the list.
        let token = forged.unwrap_or_else(|| {
            let theirs =
                (TENANTS.iter().position(|t| *t == caller).unwrap_or(0) + 1) % TENANTS.len();
            real_tokens[theirs].clone()
        });
        let mut client = stack.client.clone();
        stack.runtime.block_on(async {
            let got = client
                .list_accounts(biz::ListAccountsRequest {
                    tenant: caller.into(),
                    page_size: 50,
                    page_token: token.clone(),
                })
                .await;
            match got {
                Err(status) => prop_assert_eq!(
                    status.code(),
                    Code::InvalidArgument,
                    "token {:?}: {}",
                    token,
                    status.message()
                ),
                Ok(page) => {
                    for account in page.into_inner().accounts {
                        prop_assert_eq!(&account.tenant, caller);
                        if account.account_id.starts_with(&prefix) {
                            prop_assert!(
                                own[caller].contains(&account.account_id),
                                "token {:?} gave {} the account {}",
                                token,
                                caller,
                                account.account_id
                            );
                        }
                    }
                }
            }
            Ok(())
        })
    });
    result.expect("forged page tokens");
}
