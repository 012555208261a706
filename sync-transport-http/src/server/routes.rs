//! The routes: `POST /v1/exchange`, `GET /v1/wait`, `GET /v1/health`,
//! `GET /metrics`.
//!
//! An exchange is authenticated (token), rate limited, read (size limit
//! before decoding, body timeout), opened outside any lock (content coding,
//! envelope, body hash, decompression: small requests on the async thread,
//! large ones on the blocking pool), answered on the blocking pool (the
//! hub's lock is held only inside [`Hub::exchange_request`], for the store
//! work), and its reply encoded outside the lock.

// The `Err` of the helpers here is the response to send: built and moved
// once per refused request, never propagated far.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::clock::{Clock as _, DefaultClock};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use sync_core::VerifiedRequest;
use sync_core::token::Claims;
use sync_core::{Codec, ErrorCode, Outcome};
use tracing::Instrument as _;

use super::Shared;
use crate::auth::{AuthFailure, HubKeys, TokenAuthority, bearer};
use crate::encoding::{CodingError, ContentCoding};
use crate::hub::{Hub, HubAnswer, HubError, HubRequest, NodeStatus};
use crate::json;
use crate::{PROTOBUF, TOKEN_HEADER};

type Reply = Response<Full<Bytes>>;

/// Routes one request.
pub(super) async fn handle<H: Hub>(
    shared: Arc<Shared<H>>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Reply {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::POST, "/v1/exchange") => {
            let span = tracing::debug_span!("exchange", %peer);
            exchange(shared, peer, request).instrument(span).await
        }
        (&Method::GET, "/v1/wait") => wait(shared, peer, request).await,
        (&Method::GET, "/v1/health") => health(shared).await,
        (&Method::GET, "/metrics") if shared.config.metrics => metrics(shared).await,
        (_, "/v1/exchange" | "/v1/wait" | "/v1/health") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST for /v1/exchange and GET for /v1/wait and /v1/health",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "no such endpoint; the hub serves POST /v1/exchange, GET /v1/wait, GET /v1/health and GET /metrics",
        ),
    }
}

/// Whether the request and reply are protobuf or JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// What the store step of an exchange produced.
struct Answered {
    status: StatusCode,
    body: Bytes,
    outcome: Option<(Outcome, Vec<String>)>,
    refused_node: Option<AuthFailure>,
}

/// A request read and opened, ready for the store step.
struct Opened {
    request: HubRequest,
    format: Format,
    /// For a JSON request: the digest of the packet made of it (the client
    /// echoes it as `prev_digest`).
    request_digest: [u8; 32],
}

async fn exchange<H: Hub>(
    shared: Arc<Shared<H>>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Reply {
    let started = Instant::now();
    let now = shared.config.clock.now();
    let claims = match authenticate(&shared, peer, request.headers(), now).await {
        Ok(claims) => claims,
        Err(reply) => return reply,
    };
    if let Err(reply) = rate_limit(&shared, &claims) {
        return reply;
    }
    tracing::debug!(node = %claims.node, "authenticated");
    let headers = request.headers();
    let format = match request_format(headers) {
        Ok(format) => format,
        Err(reply) => return reply,
    };
    let coding =
        match ContentCoding::from_content_encoding(header_str(headers, header::CONTENT_ENCODING)) {
            Ok(coding) => coding,
            Err(e) => return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string()),
        };
    let reply_coding = ContentCoding::negotiate(header_str(headers, header::ACCEPT_ENCODING));
    let body = match read_body(&shared, request).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let opened = match open(&shared, body, coding, format, reply_coding, now).await {
        Ok(opened) => opened,
        Err(reply) => return reply,
    };
    let answered = match answer(&shared, claims.node, opened, now).await {
        Ok(answered) => answered,
        Err(reply) => return reply,
    };
    if let Some(failure) = answered.refused_node {
        return refuse_auth(&shared, peer, Some(claims.node), failure, now).await;
    }
    if let Some((outcome, strategies)) = &answered.outcome {
        shared
            .metrics
            .exchange(outcome, strategies, started.elapsed().as_secs_f64());
    }
    let mut reply = encoded(answered.status, format, answered.body, reply_coding).await;
    if answered.status == StatusCode::OK {
        refresh_token(&shared, &claims, now, reply.headers_mut()).await;
    }
    reply
}

/// Most bytes decompressed on the async thread, for the HTTP body and for
/// the packet body each; a request that needs more is opened on the
/// blocking pool.
const INLINE_BYTES: u64 = 256 << 10;

/// The CPU work before the store, outside any lock: the HTTP content
/// coding, the JSON conversion, and [`HubRequest::open`] (envelope, body
/// hash, decompression). A small protobuf request is opened right here
/// (an idle exchange costs microseconds); JSON and large requests on the
/// blocking pool.
///
/// A node whose `Accept-Encoding` names gzip but not zstd gets gzip
/// packets as well as a gzip body (Property 22); otherwise a reply packet
/// is compressed as the request's packet was.
async fn open<H: Hub>(
    shared: &Arc<Shared<H>>,
    body: Bytes,
    coding: ContentCoding,
    format: Format,
    reply_coding: ContentCoding,
    now: sync_core::Timestamp,
) -> Result<Opened, Reply> {
    let packet_codec = (reply_coding == ContentCoding::Gzip).then_some(Codec::Gzip);
    let inline = format == Format::Protobuf
        && coding
            .decoded_size_hint(&body)
            .is_some_and(|size| size <= INLINE_BYTES);
    if inline {
        if let Some(opened) = open_now(
            shared,
            body.clone(),
            coding,
            format,
            packet_codec,
            true,
            now,
        )? {
            return Ok(opened);
        }
    }
    let worker = Arc::clone(shared);
    let opened = tokio::task::spawn_blocking(move || {
        open_now(&worker, body, coding, format, packet_codec, false, now)
    })
    .await;
    match opened {
        Ok(Ok(Some(opened))) => Ok(opened),
        Ok(Err(reply)) => Err(reply),
        // Without the inline bound the request is always opened.
        Ok(Ok(None)) | Err(_) => Err(unavailable(shared, "the hub's worker stopped".into())),
    }
}

/// [`open`]'s work, on the calling thread. `inline` bounds what is
/// decompressed to [`INLINE_BYTES`] and returns `None` for a request
/// that needs more (to be opened on the blocking pool).
fn open_now<H: Hub>(
    shared: &Shared<H>,
    body: Bytes,
    coding: ContentCoding,
    format: Format,
    packet_codec: Option<Codec>,
    inline: bool,
    now: sync_core::Timestamp,
) -> Result<Option<Opened>, Reply> {
    let max = shared.config.max_body_bytes;
    let raw = match coding {
        ContentCoding::Identity => body,
        coding => match coding.decode(&body, if inline { INLINE_BYTES as usize } else { max }) {
            Ok(raw) => Bytes::from(raw),
            Err(CodingError::TooLarge { .. }) if inline && max > INLINE_BYTES as usize => {
                return Ok(None);
            }
            Err(e) => return Err(coding_refusal(shared, &e)),
        },
    };
    let (envelope, request_digest) = match format {
        Format::Protobuf => (raw, [0; 32]),
        Format::Json => {
            let (envelope, digest) = json::request_from_json(&raw, &shared.info, now)
                .map_err(|e| text(StatusCode::BAD_REQUEST, &e.to_string()))?;
            (Bytes::from(envelope), digest)
        }
    };
    let mut limits = shared.info.limits;
    if inline {
        limits.max_body_bytes = limits.max_body_bytes.min(INLINE_BYTES);
    }
    let mut request = HubRequest::open(envelope, &limits);
    let announced = request
        .opened
        .as_ref()
        .map_or(0, VerifiedRequest::announced_body_bytes);
    if inline && announced > limits.max_body_bytes && announced <= shared.info.limits.max_body_bytes
    {
        return Ok(None);
    }
    if let Some(codec) = packet_codec {
        request = request.with_reply_codec(codec);
    }
    if format == Format::Json {
        // A JSON client reads one packet per reply.
        request = request.with_single_packet_reply();
    }
    Ok(Some(Opened {
        request,
        format,
        request_digest,
    }))
}

/// The store step of an exchange, on the blocking pool: the hub's lock is
/// held only inside [`Hub::exchange_request`]. A JSON reply is converted
/// there too (outside the lock).
async fn answer<H: Hub>(
    shared: &Arc<Shared<H>>,
    node: sync_core::NodeId,
    opened: Opened,
    now: sync_core::Timestamp,
) -> Result<Answered, Reply> {
    let worker = Arc::clone(shared);
    let Ok(_slot) = shared.workers.acquire().await else {
        return Err(unavailable(shared, "the server is shutting down".into()));
    };
    tokio::task::spawn_blocking(move || store_step(&worker, node, opened, now))
        .await
        .unwrap_or_else(|_| Err(unavailable(shared, "the hub's worker stopped".into())))
}

fn store_step<H: Hub>(
    shared: &Shared<H>,
    node: sync_core::NodeId,
    opened: Opened,
    now: sync_core::Timestamp,
) -> Result<Answered, Reply> {
    let reply = match shared.hub.exchange_request(node, opened.request, now) {
        Ok(HubAnswer::Reply(reply)) => reply,
        Ok(HubAnswer::UnknownNode) => return Ok(refused(AuthFailure::UnknownNode(node))),
        Ok(HubAnswer::RevokedNode) => return Ok(refused(AuthFailure::RevokedNode(node))),
        Err(e) => {
            shared.metrics.failed_exchange();
            return Err(unavailable(shared, e.to_string()));
        }
    };
    let status = reply.outcome.error.map_or(StatusCode::OK, status_for);
    let body = match opened.format {
        Format::Protobuf => reply.bytes,
        Format::Json => Bytes::from(json::reply_to_json(
            &reply.bytes,
            opened.request_digest,
            &shared.info.limits,
        )),
    };
    Ok(Answered {
        status,
        body,
        outcome: Some((reply.outcome, reply.conflict_strategies)),
        refused_node: None,
    })
}

fn refused(failure: AuthFailure) -> Answered {
    Answered {
        status: StatusCode::UNAUTHORIZED,
        body: Bytes::new(),
        outcome: None,
        refused_node: Some(failure),
    }
}

/// The HTTP status for a refusal the engine answered with an error envelope.
fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::SchemaMismatch => StatusCode::CONFLICT,
        ErrorCode::Unauthenticated => StatusCode::FORBIDDEN,
        ErrorCode::UnknownNode => StatusCode::UNAUTHORIZED,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn wait<H: Hub>(
    shared: Arc<Shared<H>>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Reply {
    let now = shared.config.clock.now();
    let claims = match authenticate(&shared, peer, request.headers(), now).await {
        Ok(claims) => claims,
        Err(reply) => return reply,
    };
    if let Err(reply) = rate_limit(&shared, &claims) {
        return reply;
    }
    let wait = wait_time(request.uri().query(), shared.config.max_wait);
    let node = claims.node;
    let mut changes = shared.hub.changes();
    let status = blocking(&shared, move |hub| hub.node_status(node)).await;
    match status {
        Ok(NodeStatus::Active) => {}
        Ok(NodeStatus::Unknown) => {
            return refuse_auth(
                &shared,
                peer,
                Some(node),
                AuthFailure::UnknownNode(node),
                now,
            )
            .await;
        }
        Ok(NodeStatus::Revoked) => {
            return refuse_auth(
                &shared,
                peer,
                Some(node),
                AuthFailure::RevokedNode(node),
                now,
            )
            .await;
        }
        Err(reply) => return reply,
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = shared.shutdown.clone();
    loop {
        let pending = match blocking(&shared, move |hub| hub.pending(node)).await {
            Ok(pending) => pending,
            Err(reply) => return reply,
        };
        if pending > 0 {
            return json_reply(StatusCode::OK, &serde_json::json!({ "pending": pending }));
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
    }
    json_reply(StatusCode::OK, &serde_json::json!({ "pending": 0 }))
}

/// `?timeout=<seconds>` bounded by `max` (default `max`).
fn wait_time(query: Option<&str>, max: Duration) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(|secs| secs.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map_or(max, |secs| Duration::from_secs_f64(secs).min(max))
}

async fn health<H: Hub>(shared: Arc<Shared<H>>) -> Reply {
    let store = blocking(&shared, |hub| hub.check_store()).await.is_ok();
    let status = if store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_reply(
        status,
        &serde_json::json!({
            "status": if store { "ok" } else { "degraded" },
            "hub_node_id": shared.info.id.to_string(),
            "protocol_version": sync_proto::PROTOCOL_VERSION,
            "schema_version": shared.info.schema_version,
            "server_version": env!("CARGO_PKG_VERSION"),
            "store": if store { "reachable" } else { "unreachable" },
        }),
    )
}

async fn metrics<H: Hub>(shared: Arc<Shared<H>>) -> Reply {
    let lags = blocking(&shared, |hub| hub.lag()).await.unwrap_or_default();
    let text = shared.metrics.render(&lags, shared.config.clock.now());
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    reply
}

/// Checks the token; a failure is answered 401 and logged.
async fn authenticate<H: Hub>(
    shared: &Arc<Shared<H>>,
    peer: SocketAddr,
    headers: &HeaderMap,
    now: sync_core::Timestamp,
) -> Result<Claims, Reply> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let token = match bearer(header) {
        Ok(token) => token,
        Err(failure) => return Err(refuse_auth(shared, peer, None, failure, now).await),
    };
    match shared.tokens.verify(token, now) {
        Ok(claims) => Ok(claims),
        Err(failure) => {
            let claimed = Claims::peek(token).ok().map(|c| c.node);
            Err(refuse_auth(shared, peer, claimed, failure, now).await)
        }
    }
}

/// Answers an authentication failure: 401, a metric, and a security event
/// (time, claimed node, reason, peer address; never the token). An address
/// over its limit of failures ([`super::ServerConfig::auth_failures_per_minute`])
/// gets 429 with `Retry-After` instead, counted but not logged.
async fn refuse_auth<H: Hub>(
    shared: &Arc<Shared<H>>,
    peer: SocketAddr,
    claimed: Option<sync_core::NodeId>,
    failure: AuthFailure,
    now: sync_core::Timestamp,
) -> Reply {
    let reason = failure.reason();
    shared.metrics.auth_failure(reason);
    if let Err(not_until) = shared.auth_failures.check_key(&peer.ip()) {
        shared.metrics.limited("auth_failures");
        tracing::debug!(%peer, reason, "request refused: too many failed authentications");
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return too_many(
            wait,
            &format!(
                "too many failed authentications from {}; check this node's token and retry after {} s",
                peer.ip(),
                retry_secs(wait)
            ),
        );
    }
    let claimed_text = claimed.map_or_else(|| "none".to_owned(), |n| n.to_string());
    tracing::warn!(%peer, claimed = %claimed_text, reason, "request refused: not authenticated");
    if shared.security_log.check().is_ok() {
        let detail = format!(
            "HTTPS request refused ({reason}): {failure}; claimed node {claimed_text}; peer address {peer}"
        );
        let kind = failure.security_kind();
        let result = blocking(shared, move |hub| {
            hub.record_security_event(claimed, kind, detail, now)
        })
        .await;
        if result.is_err() {
            tracing::warn!(%peer, "could not record a security event");
        }
    }
    let mut reply = text(StatusCode::UNAUTHORIZED, &failure.to_string());
    reply.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"syncplan\""),
    );
    reply
}

fn rate_limit<H: Hub>(shared: &Shared<H>, claims: &Claims) -> Result<(), Reply> {
    match shared.limiter.check_key(&claims.node) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            shared.metrics.limited("rate");
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(too_many(
                wait,
                &format!(
                    "node {} is over its rate limit of {} requests per second; retry after {} s",
                    claims.node,
                    shared.config.rate_per_second,
                    retry_secs(wait)
                ),
            ))
        }
    }
}

/// Whole seconds to wait, rounded up, at least one.
fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// 429 with `Retry-After` (whole seconds).
fn too_many(wait: Duration, message: &str) -> Reply {
    let mut reply = text(StatusCode::TOO_MANY_REQUESTS, message);
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_secs(wait)));
    reply
}

fn request_format(headers: &HeaderMap) -> Result<Format, Reply> {
    let content_type = header_str(headers, header::CONTENT_TYPE).unwrap_or(PROTOBUF);
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" | "application/octet-stream" => {
            Ok(Format::Protobuf)
        }
        "application/json" => Ok(Format::Json),
        _ => Err(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "Content-Type {content_type:?} is not served; send application/x-protobuf or application/json"
            ),
        )),
    }
}

/// Reads the body: 413 before reading when `Content-Length` is over the
/// limit, 413 as soon as the bytes read pass it, 408 when it is too slow.
async fn read_body<H: Hub>(shared: &Shared<H>, request: Request<Incoming>) -> Result<Bytes, Reply> {
    let max = shared.config.max_body_bytes;
    let too_large = || {
        shared.metrics.limited("body_size");
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body is over the hub's limit of {max} bytes; send smaller packets (a smaller batch size)"
            ),
        )
    };
    let declared = header_str(request.headers(), header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), max);
    match tokio::time::timeout(shared.config.body_timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(text(
            StatusCode::BAD_REQUEST,
            &format!("the request body could not be read ({e}); send it again"),
        )),
        Err(_) => {
            shared.metrics.limited("body_timeout");
            Err(text(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} s; check the connection and send it again",
                    shared.config.body_timeout.as_secs()
                ),
            ))
        }
    }
}

fn coding_refusal<H: Hub>(shared: &Shared<H>, error: &CodingError) -> Reply {
    match error {
        CodingError::TooLarge { .. } => {
            shared.metrics.limited("body_size");
            text(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string())
        }
        CodingError::Unsupported(_) => text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &error.to_string()),
        _ => text(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

/// Hands the node a fresh token when its turn has come; keeps the floor
/// that retires the old one after the grace window.
async fn refresh_token<H: Hub>(
    shared: &Arc<Shared<H>>,
    claims: &Claims,
    now: sync_core::Timestamp,
    headers: &mut HeaderMap,
) {
    let Some(refresh) = shared.tokens.note_request(claims, now) else {
        return;
    };
    let Ok(value) = HeaderValue::from_str(refresh.token.as_str()) else {
        return;
    };
    let node = claims.node;
    let floor = refresh.floor;
    let saved = blocking(shared, move |hub| {
        TokenAuthority::save_floor(&mut HubKeys(hub), node, floor)
            .map_err(|e| HubError::Unavailable(e.to_string()))
    })
    .await;
    if saved.is_err() {
        tracing::warn!(%node, "could not keep a token refresh floor; the old token stays valid until it expires");
    }
    headers.insert(TOKEN_HEADER, value);
}

/// Runs a hub call on the blocking pool; a failure is answered 503.
async fn blocking<H: Hub, R: Send + 'static>(
    shared: &Arc<Shared<H>>,
    f: impl FnOnce(&H) -> Result<R, HubError> + Send + 'static,
) -> Result<R, Reply> {
    let worker = Arc::clone(shared);
    let Ok(_slot) = shared.workers.acquire().await else {
        return Err(unavailable(shared, "the server is shutting down".into()));
    };
    match tokio::task::spawn_blocking(move || f(&worker.hub)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(shared, e.to_string())),
        Err(_) => Err(unavailable(shared, "the hub's worker stopped".into())),
    }
}

fn unavailable<H: Hub>(_shared: &Shared<H>, detail: String) -> Reply {
    tracing::warn!(%detail, "hub unavailable");
    let mut reply = text(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the hub could not answer ({detail}); nothing was applied, send again later"),
    );
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    reply
}

/// A reply body in `format`, compressed with `coding` (large bodies on the
/// blocking pool).
async fn encoded(status: StatusCode, format: Format, body: Bytes, coding: ContentCoding) -> Reply {
    let content_type = match format {
        Format::Protobuf => PROTOBUF,
        Format::Json => "application/json",
    };
    let body = if coding == ContentCoding::Identity {
        body
    } else if body.len() < 64 << 10 {
        Bytes::from(coding.encode(&body))
    } else {
        let raw = body.clone();
        // A failed encoder task falls back to the body as it is, sent
        // without a content coding.
        match tokio::task::spawn_blocking(move || coding.encode(&raw)).await {
            Ok(encoded) => Bytes::from(encoded),
            Err(_) => return plain(status, content_type, body),
        }
    };
    let mut reply = plain(status, content_type, body);
    if let Some(token) = coding.token() {
        reply
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    }
    reply
}

/// A reply without a content coding.
fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    reply
}

fn json_reply(status: StatusCode, json: &serde_json::Value) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(json.to_string())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

fn text(status: StatusCode, message: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
