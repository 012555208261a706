//! The node's side: [`HttpTransport`], a [`Transport`] to a hub over HTTPS.
//!
//! It refuses `http://` URLs, trusts the roots of [`Trust`] (web PKI, a
//! hub's own CA, or one pinned certificate), bounds the connect and the
//! whole request in time, and keeps connections alive for reuse. Timeouts,
//! 5xx and 429 are transient [`TransportError`]s, which the driver retries
//! on the engine's backoff; a 429 or 503 with `Retry-After` is
//! [`TransportError::RetryAfter`] (the `syncplan` driver waits at least
//! that long), and after a 429 this transport sends nothing before its
//! `Retry-After` has passed. A refusal from the hub (an error envelope) is
//! a reply, for the engine to read.
//!
//! It runs on the tokio runtime it was created in, or, created outside
//! one, on a small runtime of its own: `exchange` can be awaited from any
//! executor.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use sync_core::token::Claims;
use sync_core::{Transport, TransportError};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::encoding::ContentCoding;
use crate::tls::{TlsError, Trust};
use crate::{PROTOBUF, TOKEN_HEADER};

/// Bodies smaller than this are compressed and decompressed on the async
/// thread; larger ones on the blocking pool.
const INLINE_CODING_BYTES: usize = 64 << 10;

/// How a node connects to its hub.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Which certificates to trust (default the web PKI roots).
    pub trust: Trust,
    /// Time to open a connection, TLS included (default 10 s).
    pub connect_timeout: Duration,
    /// Time for a whole request, connect to last reply byte (default 60 s).
    pub request_timeout: Duration,
    /// How requests are compressed and which reply coding is asked for
    /// (default zstd; gzip for hubs that ask for it).
    pub compression: ContentCoding,
    /// Idle connections kept for reuse (default 4).
    pub max_idle_connections: usize,
    /// Largest reply accepted, after decompression (default 256 MiB).
    pub max_reply_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            trust: Trust::WebPki,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            compression: ContentCoding::Zstd,
            max_idle_connections: 4,
            max_reply_bytes: 256 << 20,
        }
    }
}

impl ClientConfig {
    /// Sets the trust.
    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the compression.
    pub fn compression(mut self, coding: ContentCoding) -> Self {
        self.compression = coding;
        self
    }

    /// Sets how many idle connections are kept.
    pub fn max_idle_connections(mut self, n: usize) -> Self {
        self.max_idle_connections = n;
        self
    }
}

/// Why a transport could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not an `https://` URL.
    #[error(
        "{url:?} is not an https:// URL; syncplan only talks to hubs over HTTPS, use https://host[:port]"
    )]
    NotHttps {
        /// The URL given.
        url: String,
    },
    /// The URL could not be parsed.
    #[error("{url:?} is not a valid URL ({detail}); use https://host[:port]")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The token cannot travel in a header.
    #[error(
        "the token contains characters that cannot be sent in a header; copy the whole token the hub issued"
    )]
    BadToken,
    /// The TLS settings could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No runtime could be made.
    #[error("could not start the transport's runtime: {0}")]
    Runtime(std::io::Error),
}

/// A [`Transport`] to a hub over HTTPS. Cloning shares the connections and
/// the token.
#[derive(Clone)]
pub struct HttpTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("hub", &self.inner.target.display)
            .finish_non_exhaustive()
    }
}

struct Target {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    authority: String,
    base_path: String,
    display: String,
}

struct Inner {
    target: Target,
    tls: TlsConnector,
    config: ClientConfig,
    token: watch::Sender<String>,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    blocked_until: Mutex<Option<Instant>>,
    runtime: Runtime,
}

/// The runtime requests run on.
struct Runtime {
    handle: tokio::runtime::Handle,
    owned: Option<tokio::runtime::Runtime>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.owned.take() {
            // Never blocks, so dropping the transport is fine anywhere.
            runtime.shutdown_background();
        }
    }
}

/// A reply read whole.
struct Received {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl HttpTransport {
    /// A transport to the hub at `url` (`https://host[:port][/prefix]`),
    /// authenticating with `token`.
    pub fn new(
        url: &str,
        token: impl Into<String>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let target = parse_url(url)?;
        let token = token.into();
        HeaderValue::from_str(&bearer_value(&token)).map_err(|_| ClientError::BadToken)?;
        let tls = TlsConnector::from(config.trust.client_config()?);
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(handle) => Runtime {
                handle,
                owned: None,
            },
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("syncplan-http")
                    .enable_all()
                    .build()
                    .map_err(ClientError::Runtime)?;
                Runtime {
                    handle: runtime.handle().clone(),
                    owned: Some(runtime),
                }
            }
        };
        Ok(HttpTransport {
            inner: Arc::new(Inner {
                target,
                tls,
                config,
                token: watch::channel(token).0,
                pool: Mutex::new(Vec::new()),
                blocked_until: Mutex::new(None),
                runtime,
            }),
        })
    }

    /// The token in use: the newest one the hub handed out. Keep it where
    /// the node keeps its credentials, so a restart uses it too.
    pub fn token(&self) -> String {
        self.inner.token.borrow().clone()
    }

    /// Tells of every fresh token the hub hands out.
    pub fn token_updates(&self) -> watch::Receiver<String> {
        self.inner.token.subscribe()
    }

    /// How long the hub asked to wait (a 429's `Retry-After`) from now,
    /// if that time has not passed.
    pub fn retry_after(&self) -> Option<Duration> {
        let until = (*lock(&self.inner.blocked_until))?;
        until.checked_duration_since(Instant::now())
    }

    /// Waits until the hub has something for this node, for at most `max`
    /// (and the hub's own bound); returns how many changes are pending (0
    /// when the wait ended with nothing).
    pub async fn wait(&self, max: Duration) -> Result<u64, TransportError> {
        let inner = Arc::clone(&self.inner);
        let path = format!("/v1/wait?timeout={}", max.as_secs_f64());
        let budget = max + inner.config.request_timeout;
        let received = self
            .run(move || inner.request(Method::GET, path, Bytes::new(), None, budget))
            .await?;
        let json = self.json_of(received)?;
        Ok(json
            .get("pending")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0))
    }

    /// The hub's health report (`GET /v1/health`).
    pub async fn health(&self) -> Result<serde_json::Value, TransportError> {
        let inner = Arc::clone(&self.inner);
        let budget = inner.config.request_timeout;
        let received = self
            .run(move || {
                inner.request(Method::GET, "/v1/health".into(), Bytes::new(), None, budget)
            })
            .await?;
        let body: serde_json::Value = serde_json::from_slice(&received.body)
            .map_err(|e| self.refused(received.status, e.to_string()))?;
        Ok(body)
    }

    fn json_of(&self, received: Received) -> Result<serde_json::Value, TransportError> {
        if received.status != StatusCode::OK {
            return Err(self.inner.status_error(&received));
        }
        serde_json::from_slice(&received.body)
            .map_err(|e| self.refused(received.status, format!("the hub's reply is not JSON: {e}")))
    }

    fn refused(&self, status: StatusCode, message: String) -> TransportError {
        TransportError::Refused {
            target: self.inner.target.display.clone(),
            status: status.as_u16(),
            message,
        }
    }

    /// Runs a request on the transport's runtime, from whatever executor
    /// awaits it.
    async fn run<F, Fut>(&self, f: F) -> Result<Received, TransportError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Received, TransportError>> + Send + 'static,
    {
        let target = self.inner.target.display.clone();
        match self
            .inner
            .runtime
            .handle
            .spawn(async move { f().await })
            .await
        {
            Ok(result) => result,
            Err(_) => Err(TransportError::Closed { target }),
        }
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn exchange(&self, outgoing: Bytes) -> Result<Vec<Bytes>, TransportError> {
        if let Some(wait) = self.retry_after() {
            return Err(TransportError::RetryAfter {
                target: self.inner.target.display.clone(),
                status: StatusCode::TOO_MANY_REQUESTS.as_u16(),
                retry_after_ms: millis(wait),
                message: "no request was sent: the hub's last answer asked to wait".into(),
            });
        }
        let inner = Arc::clone(&self.inner);
        let coding = inner.config.compression;
        let budget = inner.config.request_timeout;
        let received = self
            .run(move || async move {
                let body = if coding == ContentCoding::Identity || outgoing.is_empty() {
                    outgoing
                } else if outgoing.len() < INLINE_CODING_BYTES {
                    Bytes::from(coding.encode(&outgoing))
                } else {
                    let raw = outgoing.clone();
                    let encoded = tokio::task::spawn_blocking(move || coding.encode(&raw)).await;
                    Bytes::from(encoded.unwrap_or_else(|_| outgoing.to_vec()))
                };
                inner
                    .request(
                        Method::POST,
                        "/v1/exchange".into(),
                        body,
                        Some(coding),
                        budget,
                    )
                    .await
            })
            .await?;
        self.inner.after_reply(&received);
        let is_envelope = received
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(PROTOBUF.as_bytes()));
        // A refusal the hub explains with an error envelope (400, 401, 403,
        // 409, 413) is a reply for the engine; only plain-text answers are
        // transport errors.
        if is_envelope && (received.status == StatusCode::OK || received.status.is_client_error()) {
            return Ok(vec![received.body]);
        }
        Err(self.inner.status_error(&received))
    }
}

impl Inner {
    /// One request with its whole reply, within `budget`. A connection from
    /// the pool that turns out closed is replaced once (an exchange is safe
    /// to send twice: the hub applies a packet once).
    async fn request(
        self: Arc<Self>,
        method: Method,
        path: String,
        body: Bytes,
        coding: Option<ContentCoding>,
        budget: Duration,
    ) -> Result<Received, TransportError> {
        let work = async {
            let mut retried = false;
            loop {
                let (mut sender, reused) = self.checkout().await?;
                let request = self.build(&method, &path, body.clone(), coding)?;
                match sender.send_request(request).await {
                    Ok(response) => {
                        let received = self.read(response).await?;
                        self.checkin(sender);
                        return Ok(received);
                    }
                    Err(error) if reused && !retried => {
                        tracing::debug!(%error, "a kept-alive connection had closed; retrying on a new one");
                        retried = true;
                    }
                    Err(error) => {
                        return Err(TransportError::Unreachable {
                            target: self.target.display.clone(),
                            detail: format!("the request failed: {error}"),
                        });
                    }
                }
            }
        };
        match tokio::time::timeout(budget, work).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                target: self.target.display.clone(),
                after_ms: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    fn build(
        &self,
        method: &Method,
        path: &str,
        body: Bytes,
        coding: Option<ContentCoding>,
    ) -> Result<Request<Full<Bytes>>, TransportError> {
        let uri = format!("{}{path}", self.target.base_path);
        let token = bearer_value(&self.token.borrow());
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::HOST, self.target.authority.as_str())
            .header(header::AUTHORIZATION, token);
        if let Some(accept) = self.config.compression.token() {
            builder = builder.header(header::ACCEPT_ENCODING, accept);
        }
        if *method == Method::POST {
            builder = builder
                .header(header::CONTENT_TYPE, PROTOBUF)
                .header(header::CONTENT_LENGTH, body.len());
            if let Some(encoding) = coding
                .and_then(ContentCoding::token)
                .filter(|_| !body.is_empty())
            {
                builder = builder.header(header::CONTENT_ENCODING, encoding);
            }
        }
        builder
            .body(Full::new(body))
            .map_err(|e| TransportError::Refused {
                target: self.target.display.clone(),
                status: 0,
                message: format!("the request could not be built: {e}"),
            })
    }

    /// Reads the reply body (bounded) and decodes its content coding.
    async fn read(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Received, TransportError> {
        let (parts, body) = response.into_parts();
        let max = self.config.max_reply_bytes;
        let body = Limited::new(body, max)
            .collect()
            .await
            .map_err(|e| TransportError::Unreachable {
                target: self.target.display.clone(),
                detail: format!("the reply could not be read: {e}"),
            })?
            .to_bytes();
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let coding = ContentCoding::from_content_encoding(encoding)
            .map_err(|e| self.protocol_error(e.to_string()))?;
        let body = if coding == ContentCoding::Identity {
            body
        } else if body.len() < INLINE_CODING_BYTES {
            Bytes::from(
                coding
                    .decode(&body, max)
                    .map_err(|e| self.protocol_error(e.to_string()))?,
            )
        } else {
            let decoded = tokio::task::spawn_blocking(move || coding.decode(&body, max))
                .await
                .map_err(|_| TransportError::Closed {
                    target: self.target.display.clone(),
                })?;
            Bytes::from(decoded.map_err(|e| self.protocol_error(e.to_string()))?)
        };
        Ok(Received {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn protocol_error(&self, detail: String) -> TransportError {
        TransportError::Unreachable {
            target: self.target.display.clone(),
            detail: format!("the reply was damaged: {detail}"),
        }
    }

    /// Keeps a fresh token, and a 429's `Retry-After` (the hub limits this
    /// node: nothing is sent before it has passed). A 503's `Retry-After`
    /// only travels in the error, for the driver to wait on.
    fn after_reply(&self, received: &Received) {
        if let Some(fresh) = received
            .headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            let newer = match (Claims::peek(fresh), Claims::peek(&self.token.borrow())) {
                (Ok(fresh), Ok(current)) => fresh.issued_at >= current.issued_at,
                (Ok(_), Err(_)) => true,
                _ => false,
            };
            if newer {
                self.token.send_replace(fresh.to_owned());
            }
        }
        if let Some(wait) =
            retry_after(received).filter(|_| received.status == StatusCode::TOO_MANY_REQUESTS)
        {
            *lock(&self.blocked_until) = Some(Instant::now() + wait);
        }
    }

    /// The error for a reply that is not an envelope.
    fn status_error(&self, received: &Received) -> TransportError {
        let message = String::from_utf8_lossy(&received.body[..received.body.len().min(2048)])
            .trim()
            .to_owned();
        if received.status == StatusCode::REQUEST_TIMEOUT {
            return TransportError::Timeout {
                target: self.target.display.clone(),
                after_ms: u64::try_from(self.config.request_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            };
        }
        if let Some(wait) = retry_after(received) {
            return TransportError::RetryAfter {
                target: self.target.display.clone(),
                status: received.status.as_u16(),
                retry_after_ms: millis(wait),
                message,
            };
        }
        TransportError::Refused {
            target: self.target.display.clone(),
            status: received.status.as_u16(),
            message,
        }
    }

    async fn checkout(&self) -> Result<(SendRequest<Full<Bytes>>, bool), TransportError> {
        loop {
            let pooled = lock(&self.pool).pop();
            match pooled {
                Some(mut sender) => {
                    if sender.is_closed() {
                        continue;
                    }
                    if sender.ready().await.is_ok() {
                        return Ok((sender, true));
                    }
                }
                None => return Ok((self.connect().await?, false)),
            }
        }
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut pool = lock(&self.pool);
        if pool.len() < self.config.max_idle_connections {
            pool.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let target = &self.target;
        let unreachable = |detail: String| TransportError::Unreachable {
            target: target.display.clone(),
            detail,
        };
        let connect = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| unreachable(format!("connecting failed: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .tls
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(|e| unreachable(format!(
                    "the TLS handshake failed ({e}); if the hub's certificate was refused, check the CA root or the pinned fingerprint"
                )))?;
            let (sender, connection) = http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| unreachable(format!("the HTTP handshake failed: {e}")))?;
            tokio::spawn(async move {
                // The connection ends when the hub or the pool drops it.
                let _ = connection.await;
            });
            Ok(sender)
        };
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                target: target.display.clone(),
                after_ms: u64::try_from(self.config.connect_timeout.as_millis())
                    .unwrap_or(u64::MAX),
            }),
        }
    }
}

/// How long a 429 or 503 asks to wait: its `Retry-After` in seconds (one
/// second when it names none or a date; at most an hour).
fn retry_after(received: &Received) -> Option<Duration> {
    let status = received.status;
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let header = received.headers.get(header::RETRY_AFTER);
    if status == StatusCode::SERVICE_UNAVAILABLE && header.is_none() {
        return None;
    }
    let secs = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .min(3600);
    Some(Duration::from_secs(secs))
}

fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

fn bearer_value(token: &str) -> String {
    format!("Bearer {token}")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn parse_url(url: &str) -> Result<Target, ClientError> {
    let bad = |detail: &str| ClientError::BadUrl {
        url: url.to_owned(),
        detail: detail.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(_) | None => {
            return Err(ClientError::NotHttps {
                url: url.to_owned(),
            });
        }
    }
    let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "credentials in a URL are refused; the token travels in a header",
        ));
    }
    if uri.query().is_some() {
        return Err(bad("a hub URL takes no query"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| bad("the host is not a DNS name or IP address"))?;
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Target {
        display: format!("https://{}{}", authority.as_str(), base_path),
        authority: authority.as_str().to_owned(),
        host,
        port,
        server_name,
        base_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_are_accepted() {
        for url in [
            "http://hub.example:8080",
            "ftp://hub",
            "hub.example",
            "//hub",
        ] {
            assert!(
                matches!(
                    parse_url(url),
                    Err(ClientError::NotHttps { .. }) | Err(ClientError::BadUrl { .. })
                ),
                "{url}"
            );
        }
        assert!(matches!(
            parse_url("http://hub"),
            Err(ClientError::NotHttps { .. })
        ));
        let target = parse_url("https://hub.example:8443/sync/").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.base_path.as_str()),
            ("hub.example", 8443, "/sync")
        );
        assert_eq!(parse_url("https://127.0.0.1").unwrap().port, 443);
        assert!(parse_url("https://user:pw@hub").is_err());
        assert!(parse_url("https://hub/?token=x").is_err());
    }
}
