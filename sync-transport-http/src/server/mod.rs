//! The embeddable hub server: [`HubServer::bind`] with an address, a TLS
//! configuration and a [`Hub`], in any tokio application.
//!
//! Per connection: a TLS handshake (bounded by
//! [`ServerConfig::handshake_timeout`]; a plain-HTTP client gets no
//! service), then HTTP/1.1 with keep-alive, each request's header bounded by
//! [`ServerConfig::header_timeout`] and its body by
//! [`ServerConfig::body_timeout`]. The routes are listed in the crate docs.

mod routes;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sync_core::NodeId;
use sync_core::token::Token;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::{AuthError, HubKeys, TokenAuthority, TokenPolicy};
use crate::clock::Clock;
use crate::hub::{Hub, HubInfo};
use crate::metrics::Metrics;

/// Limits, timeouts and policies of a server. Every default is safe for a
/// hub on the internet.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted, before and after decompression
    /// (default 10 MiB); larger ones get 413 before anything is decoded.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's header (default 10 s), and
    /// how long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body (default 30 s).
    pub body_timeout: Duration,
    /// Time a client has to finish the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Longest a `GET /v1/wait` is held open (default 30 s).
    pub max_wait: Duration,
    /// Requests per second a node may make, on average (default 100).
    pub rate_per_second: u32,
    /// Requests a node may make at once above its rate (default 200).
    pub rate_burst: u32,
    /// Failed authentications (401s: no, bad, expired or revoked token;
    /// unknown node) one IP address may cause per minute, on average
    /// (default 60). Beyond that its failing requests are answered 429 with
    /// `Retry-After`, without a security-log write. Only failures count:
    /// nodes with valid tokens behind the same address are served as usual.
    pub auth_failures_per_minute: u32,
    /// Failed authentications one IP address may cause at once above that
    /// rate (default 20).
    pub auth_failure_burst: u32,
    /// Token lifetime and refresh.
    pub tokens: TokenPolicy,
    /// Where `now` comes from (default the system clock).
    pub clock: Clock,
    /// Serve `GET /metrics` (default true).
    pub metrics: bool,
    /// Requests served on the blocking pool at once (default: the number of
    /// cores). The engine serialises store work anyway; more would only
    /// park threads on its lock. Requests beyond wait asynchronously.
    pub blocking_workers: usize,
    /// Refused-token events written to the hub's security log per second,
    /// at most (default 50); beyond that they are only counted in metrics,
    /// so a flood of bad tokens cannot become a flood of store writes.
    pub security_events_per_second: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 10 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            rate_per_second: 100,
            rate_burst: 200,
            auth_failures_per_minute: 60,
            auth_failure_burst: 20,
            tokens: TokenPolicy::default(),
            clock: Clock::system(),
            metrics: true,
            security_events_per_second: 50,
            blocking_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl ServerConfig {
    /// Sets the body limit.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the header and idle timeout.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets the body timeout.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets the TLS handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the longest long-poll.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Sets the per-node rate limit.
    pub fn rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.rate_per_second = per_second;
        self.rate_burst = burst;
        self
    }

    /// Sets the per-address limit on failed authentications.
    pub fn auth_failure_limit(mut self, per_minute: u32, burst: u32) -> Self {
        self.auth_failures_per_minute = per_minute;
        self.auth_failure_burst = burst;
        self
    }

    /// Sets the token policy.
    pub fn tokens(mut self, tokens: TokenPolicy) -> Self {
        self.tokens = tokens;
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Turns the metrics endpoint on or off.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Sets how many requests are served on the blocking pool at once.
    pub fn blocking_workers(mut self, workers: usize) -> Self {
        self.blocking_workers = workers;
        self
    }

    /// Sets how many refused-token events per second reach the store.
    pub fn security_events_per_second(mut self, events: u32) -> Self {
        self.security_events_per_second = events;
        self
    }

    fn quota(&self) -> Quota {
        let per_second = NonZeroU32::new(self.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.rate_burst).unwrap_or(per_second);
        Quota::per_second(per_second).allow_burst(burst)
    }

    fn auth_failure_quota(&self) -> Quota {
        let per_minute = NonZeroU32::new(self.auth_failures_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.auth_failure_burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(per_minute).allow_burst(burst)
    }
}

/// Why the server could not start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}; pick a free port or check permissions")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Keys or tokens failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The blocking pool went away (the runtime is shutting down).
    #[error("the server's runtime is shutting down; start the server in a running tokio runtime")]
    Runtime,
}

/// State shared by every connection.
pub(crate) struct Shared<H: Hub> {
    pub hub: Arc<H>,
    pub info: HubInfo,
    pub config: ServerConfig,
    pub tokens: TokenAuthority,
    pub metrics: Metrics,
    pub limiter: DefaultKeyedRateLimiter<NodeId>,
    /// Failed authentications per client address
    /// ([`ServerConfig::auth_failures_per_minute`]).
    pub auth_failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Bounds how many refused-token events per second reach the store, so
    /// a flood of bad tokens cannot turn into a flood of writes.
    pub security_log: DefaultDirectRateLimiter,
    pub shutdown: watch::Receiver<bool>,
    /// Slots on the blocking pool ([`ServerConfig::blocking_workers`]).
    pub workers: tokio::sync::Semaphore,
}

impl<H: Hub> Shared<H> {
    /// Loads the signing keys from `hub` (making the first one on a hub's
    /// first start) and builds the state every request shares, with the
    /// sender that stops it.
    async fn open(
        hub: H,
        config: ServerConfig,
    ) -> Result<(Arc<Self>, watch::Sender<bool>), ServerError> {
        let hub = Arc::new(hub);
        let (tokens, hub) = {
            let policy = config.tokens.clone();
            let now = config.clock.now();
            tokio::task::spawn_blocking(move || {
                let tokens = TokenAuthority::open(&mut HubKeys(&*hub), policy, now);
                (tokens, hub)
            })
            .await
            .map_err(|_| ServerError::Runtime)?
        };
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            info: hub.info(),
            hub,
            tokens: tokens?,
            metrics: Metrics::new(),
            limiter: RateLimiter::hashmap(config.quota()),
            auth_failures: RateLimiter::hashmap(config.auth_failure_quota()),
            security_log: RateLimiter::direct(Quota::per_second(
                NonZeroU32::new(config.security_events_per_second).unwrap_or(NonZeroU32::MIN),
            )),
            workers: tokio::sync::Semaphore::new(config.blocking_workers.max(1)),
            config,
            shutdown,
        });
        Ok((shared, stop))
    }

    /// Issues a token for `node` on the blocking pool, refusing nodes that
    /// are not registered or revoked.
    async fn issue_token(self: &Arc<Self>, node: NodeId) -> Result<Token, ServerError> {
        let shared = Arc::clone(self);
        let now = shared.config.clock.now();
        tokio::task::spawn_blocking(move || {
            shared
                .tokens
                .issue_checked(&mut HubKeys(&*shared.hub), node, now)
        })
        .await
        .map_err(|_| ServerError::Runtime)?
        .map_err(ServerError::from)
    }
}

/// A running hub server. Dropping it stops accepting connections; call
/// [`HubServer::shutdown`] to also finish the requests in flight.
pub struct HubServer<H: Hub> {
    shared: Arc<Shared<H>>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl<H: Hub> HubServer<H> {
    /// Binds `addr` (port 0 picks a free one) and serves `hub` over TLS with
    /// `tls` (see [`crate::TlsIdentity::server_config`]). Loads the signing
    /// keys from the hub's store, making the first one on a hub's first
    /// start. Must be called inside a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        hub: H,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let (shared, stop) = Shared::open(hub, config).await?;
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            Arc::clone(&shared),
        ));
        tracing::info!(%addr, hub = %shared.info.id, "hub server listening");
        Ok(HubServer {
            shared,
            addr,
            stop,
            task: Some(task),
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL nodes use (`https://<address>`); with a certificate for
    /// a DNS name, give nodes that name instead.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The hub served.
    pub fn hub(&self) -> &H {
        &self.shared.hub
    }

    /// Issues a token for `node`, refusing nodes that are not registered or
    /// revoked.
    pub async fn issue_token(&self, node: NodeId) -> Result<Token, ServerError> {
        self.shared.issue_token(node).await
    }

    /// Rotates the signing key: new tokens are signed with a new key, the
    /// tokens signed before stay valid until they expire. Returns the new
    /// key's id.
    pub async fn rotate_signing_key(&self) -> Result<u32, ServerError> {
        let shared = Arc::clone(&self.shared);
        let now = shared.config.clock.now();
        tokio::task::spawn_blocking(move || shared.tokens.rotate(&mut HubKeys(&*shared.hub), now))
            .await
            .map_err(|_| ServerError::Runtime)?
            .map_err(ServerError::from)
    }

    /// The token authority (policy, current key id).
    pub fn tokens(&self) -> &TokenAuthority {
        &self.shared.tokens
    }

    /// Stops accepting connections, lets requests in flight finish (up to
    /// five seconds) and returns when every connection is closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<H: Hub> Drop for HubServer<H> {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How often the rate limiters forget idle keys.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

/// The hub's request handling without a listener, sockets or TLS: raw
/// HTTP/1.1 request bytes in, raw response bytes out, through the same
/// parser (hyper), routes, limits, authentication and hub as
/// [`HubServer`]. For tests and fuzzing (the fuzz target
/// `http_exchange` feeds it arbitrary bytes); a hub on a network is served
/// by [`HubServer`], which puts TLS in front.
pub struct HubService<H: Hub> {
    shared: Arc<Shared<H>>,
    /// Kept so that long polls see the service as running.
    _stop: watch::Sender<bool>,
}

impl<H: Hub> HubService<H> {
    /// Loads the signing keys from `hub` like [`HubServer::bind`] (making
    /// the first one on a hub's first start), without binding anything.
    /// Must be called inside a tokio runtime.
    pub async fn new(hub: H, config: ServerConfig) -> Result<Self, ServerError> {
        let (shared, stop) = Shared::open(hub, config).await?;
        Ok(HubService {
            shared,
            _stop: stop,
        })
    }

    /// The hub served.
    pub fn hub(&self) -> &H {
        &self.shared.hub
    }

    /// Issues a token for `node`, as [`HubServer::issue_token`] does.
    pub async fn issue_token(&self, node: NodeId) -> Result<Token, ServerError> {
        self.shared.issue_token(node).await
    }

    /// Serves `request`, the bytes a client sent on one connection (one
    /// request or several pipelined, complete or not), and returns every
    /// byte the server wrote back before closing it. The client's side is
    /// closed after the last byte, and the server answers what it read
    /// (half-close), as if the client waited for the answers. The header
    /// and body timeouts of the [`ServerConfig`] apply.
    pub async fn respond_raw(&self, request: &[u8], peer: SocketAddr) -> Vec<u8> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (client, server) = tokio::io::duplex(64 << 10);
        let serve = serve_http(TokioIo::new(server), peer, Arc::clone(&self.shared), true);
        let (mut read, mut write) = tokio::io::split(client);
        let send = async move {
            // The server closing early (a refused request) ends the write.
            let _ = write.write_all(request).await;
            let _ = write.shutdown().await;
        };
        let mut answer = Vec::new();
        let receive = read.read_to_end(&mut answer);
        let _ = tokio::join!(serve, send, receive);
        answer
    }
}

async fn accept_loop<H: Hub>(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared<H>>) {
    let mut connections = JoinSet::new();
    let mut shutdown = shared.shutdown.clone();
    let mut sweep = tokio::time::interval(LIMITER_SWEEP);
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                // Keys whose buckets are full again are forgotten, so the
                // limiters' maps do not grow with every node and address.
                shared.limiter.retain_recent();
                shared.auth_failures.retain_recent();
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve_connection(tcp, peer, acceptor.clone(), Arc::clone(&shared)));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

async fn serve_connection<H: Hub>(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared<H>>,
) {
    let _ = tcp.set_nodelay(true);
    let tls =
        match tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake refused");
                return;
            }
            Err(_) => {
                shared.metrics.limited("handshake_timeout");
                return;
            }
        };
    shared.metrics.connection();
    serve_http(TokioIo::new(tls), peer, shared, false).await;
}

/// Serves HTTP/1.1 with keep-alive on `io` until the client closes it or
/// the server shuts down; with `half_close` a client that closed its side
/// still gets the answers to what it sent.
async fn serve_http<H: Hub, IO>(io: IO, peer: SocketAddr, shared: Arc<Shared<H>>, half_close: bool)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service_shared = Arc::clone(&shared);
    let service = service_fn(move |request| {
        let shared = Arc::clone(&service_shared);
        async move { Ok::<_, std::convert::Infallible>(routes::handle(shared, peer, request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .half_close(half_close)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutdown = shared.shutdown.clone();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.as_mut().await;
        }
    }
}
