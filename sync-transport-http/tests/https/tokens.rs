//! Tokens: the key made on first start and kept, expiry, rotation and
//! refresh under concurrent requests.

use std::time::Duration;

use hyper::StatusCode;
use sync_conformance::fixtures::{record, t};
use sync_core::Transport;
use sync_core::token::Claims;
use sync_transport_http::auth::KEY_PREFIX;
use sync_transport_http::{ManualClock, ServerConfig, TokenPolicy, issue_token};

use crate::common::*;

const SECOND: i64 = 1_000_000;

fn note(title: &str) -> sync_core::Record {
    record([("title", title.into())])
}

/// `count` exchanges by node `i` over `transport`, each with a new change.
/// The node's clock follows the hub's.
async fn exchanges<T: Transport>(i: usize, transport: &T, count: usize, clock: &ManualClock) {
    let mut n = node(i);
    for k in 0..count {
        n.insert(NOTE_SERVER_WINS, note(&format!("{i}-{k}")), t(0))
            .expect("insert");
        sync_at(&mut n, transport, clock.now()).await.expect("sync");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_is_made_on_first_start_and_kept_in_the_store() {
    bounded(async {
        let fx = Fixture::start(1).await;
        let keys = fx
            .hub
            .with_engine(|e| e.meta_with_prefix(KEY_PREFIX))
            .expect("meta");
        assert_eq!(keys.len(), 1, "one key made on first start");
        let token = fx.token(0).await;
        let fx = fx.restart(ServerConfig::default()).await;
        let again = fx
            .hub
            .with_engine(|e| e.meta_with_prefix(KEY_PREFIX))
            .expect("meta");
        assert_eq!(again, keys, "a restart keeps the key");
        exchanges(0, &fx.transport(&token), 1, &fx.clock).await;

        // A token issued offline on the hub's store is accepted too.
        let offline = fx
            .hub
            .with_engine(|e| issue_token(e, node_id(0), &TokenPolicy::default(), start_time()))
            .expect("offline token");
        exchanges(0, &fx.transport(offline.as_str()), 1, &fx.clock).await;
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_and_a_new_one_works() {
    bounded(async {
        let fx = Fixture::with(1, |c| {
            c.tokens(TokenPolicy::default().ttl(Duration::from_secs(60)))
        })
        .await;
        let token = fx.token(0).await;
        exchanges(0, &fx.transport(&token), 1, &fx.clock).await;
        fx.clock.advance_micros(60 * SECOND);
        let reply = fx.raw(get("/v1/wait?timeout=0", Some(&token))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(reply.text().contains("expired"), "{}", reply.text());
        let fresh = fx.token(0).await;
        exchanges(0, &fx.transport(&fresh), 1, &fx.clock).await;
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_concurrent_requests_keeps_old_tokens_until_they_expire() {
    bounded(async {
        let ttl = 3600;
        let fx = Fixture::with(3, |c| {
            c.tokens(
                TokenPolicy::default()
                    .ttl(Duration::from_secs(ttl))
                    .refresh_every(0),
            )
        })
        .await;
        let mut old_tokens = Vec::new();
        for i in 0..3 {
            old_tokens.push(fx.token(i).await);
        }
        let workers: Vec<_> = old_tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let transport = fx.transport(token);
                let clock = fx.clock.clone();
                tokio::spawn(async move { exchanges(i, &transport, 15, &clock).await })
            })
            .collect();
        let mut rotated = Vec::new();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            rotated.push(fx.server.rotate_signing_key().await.expect("rotate"));
        }
        for worker in workers {
            worker
                .await
                .expect("every request during the rotations succeeded");
        }
        assert_eq!(rotated, vec![2, 3]);
        let new = fx.token(0).await;
        assert_eq!(Claims::peek(&new).expect("claims").key_id, 3);
        assert_eq!(Claims::peek(&old_tokens[0]).expect("claims").key_id, 1);
        exchanges(0, &fx.transport(&old_tokens[0]), 1, &fx.clock).await;

        // Once the old tokens expired, they are refused; the new one works,
        // and the next rotation drops the retired keys from the store.
        fx.clock.advance_micros(ttl as i64 * SECOND);
        let reply = fx
            .raw(get("/v1/wait?timeout=0", Some(&old_tokens[1])))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let newer = fx.token(1).await;
        exchanges(1, &fx.transport(&newer), 1, &fx.clock).await;
        fx.server.rotate_signing_key().await.expect("rotate");
        let keys = fx
            .hub
            .with_engine(|e| e.meta_with_prefix(KEY_PREFIX))
            .expect("meta");
        assert_eq!(
            keys.len(),
            2,
            "keys 3 and 4 are left: {:?}",
            keys.iter().map(|k| &k.0).collect::<Vec<_>>()
        );
        fx.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_every_n_requests_and_concurrent_requests_never_fail() {
    bounded(async {
        let fx = Fixture::with(1, |c| {
            c.tokens(
                TokenPolicy::default()
                    .refresh_every(5)
                    .refresh_grace(Duration::from_secs(60)),
            )
        })
        .await;
        let first = fx.token(0).await;
        let transport = fx.transport(&first);
        // Fresh tokens are issued a second after the first one.
        fx.clock.advance_micros(SECOND);
        let updates = transport.token_updates();
        // Four tasks share the transport (and its token) at once.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let transport = transport.clone();
                tokio::spawn(async move {
                    let mut n = node(0);
                    let packet = first_packet(&mut n);
                    for _ in 0..10 {
                        transport
                            .exchange(packet.clone())
                            .await
                            .expect("never refused");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert!(
            updates.has_changed().expect("open"),
            "a fresh token arrived"
        );
        let current = transport.token();
        assert_ne!(current, first);
        let claims = Claims::peek(&current).expect("claims");
        assert_eq!(claims.node, node_id(0));

        // Within the grace window the first token still works; after it, not.
        let ok = fx.raw(get("/v1/wait?timeout=0", Some(&first))).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
        fx.clock.advance_micros(61 * SECOND);
        let late = fx.raw(get("/v1/wait?timeout=0", Some(&first))).await;
        assert_eq!(late.status, StatusCode::UNAUTHORIZED);
        assert!(late.text().contains("replaced"), "{}", late.text());
        let now_ok = fx
            .raw(get("/v1/wait?timeout=0", Some(&transport.token())))
            .await;
        assert_eq!(now_ok.status, StatusCode::OK);

        // The floor survives a restart.
        let fx = fx.restart(ServerConfig::default()).await;
        let after_restart = fx.raw(get("/v1/wait?timeout=0", Some(&first))).await;
        assert_eq!(after_restart.status, StatusCode::UNAUTHORIZED);
        fx.shutdown().await;
    })
    .await;
}
