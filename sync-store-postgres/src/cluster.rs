//! A throwaway PostgreSQL server for tests, simulations and benchmarks.
//!
//! [`TempCluster::start`] runs `initdb` in a new temporary directory and
//! starts `postgres` on it, listening on a Unix socket in that directory
//! only (no TCP port at all). PostgreSQL refuses to run as root, so when
//! this process is root the server runs as the `postgres` user that
//! Debian's package creates (through `setpriv`), in a directory that user
//! owns. A small watchdog shell owns the server: it stops it and removes the
//! directory when the [`TempCluster`] is dropped, or when this process
//! exits in any way (a test binary never drops its statics, and a killed one
//! drops nothing).
//!
//! [`test_url`] is what tests call: `SYNCPLAN_PG_URL` when it is set (an
//! existing server), otherwise one throwaway server shared by the whole
//! process. The binaries are looked for in `SYNCPLAN_PG_BIN`, then in
//! `/usr/lib/postgresql/<version>/bin` (where Debian puts them, not on
//! `PATH`), then on `PATH`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The port number in the socket's name (`.s.PGSQL.5432`); nothing listens on
/// TCP.
const PORT: u16 = 5432;

/// How long a new server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starting a throwaway server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No PostgreSQL binaries were found.
    #[error(
        "PostgreSQL is not installed: no initdb in $SYNCPLAN_PG_BIN, /usr/lib/postgresql/*/bin or on PATH. \
         Install it with `apt-get install -y postgresql` (Debian; .ci/run does this), \
         or set SYNCPLAN_PG_URL to the connection string of an existing server"
    )]
    NotInstalled,
    /// This process is root and there is no unprivileged `postgres` user to
    /// run the server as.
    #[error(
        "running as root, and there is no `postgres` user to run the server as (PostgreSQL refuses root); \
         install Debian's `postgresql` package, which creates it, or set SYNCPLAN_PG_URL"
    )]
    NoPostgresUser,
    /// A file operation or a process start failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `initdb` failed.
    #[error("initdb failed in {dir}: {output}")]
    Initdb {
        /// The data directory.
        dir: PathBuf,
        /// What it printed.
        output: String,
    },
    /// The server did not come up.
    #[error("the throwaway PostgreSQL server did not accept connections: {reason}; its log: {log}")]
    NotReady {
        /// Why we gave up.
        reason: String,
        /// The server's log.
        log: String,
    },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

/// The directory holding `initdb` and `postgres`, if PostgreSQL is installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SYNCPLAN_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    })
}

/// A running throwaway server; dropping it stops the server and removes its
/// files.
#[derive(Debug)]
pub struct TempCluster {
    dir: PathBuf,
    url: String,
    watchdog: Child,
}

/// The watchdog: starts the server (the arguments after the first two),
/// then stops it and removes the directory when told to (SIGTERM) or when
/// the owner process is gone.
const WATCHDOG: &str = r#"
dir="$1"; owner="$2"; shift 2
"$@" >>"$dir/server.log" 2>&1 &
pg=$!
stop() {
    kill -INT "$pg" 2>/dev/null
    wait "$pg" 2>/dev/null
    rm -rf "$dir"
    exit 0
}
trap stop TERM INT HUP
while kill -0 "$owner" 2>/dev/null && kill -0 "$pg" 2>/dev/null; do sleep 0.2; done
stop
"#;

/// The numeric uid and gid of user `name`.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

/// A command for `program` that runs as `user` (uid, gid) when set.
fn command_as(user: Option<(u32, u32)>, program: &Path) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl TempCluster {
    /// Creates and starts a new server in a new temporary directory, with
    /// the binaries [`bin_dir`] finds.
    pub fn start() -> Result<TempCluster, ClusterError> {
        Self::start_with(&bin_dir().ok_or(ClusterError::NotInstalled)?)
    }

    /// Like [`TempCluster::start`], with the binaries in `bin`.
    pub fn start_with(bin: &Path) -> Result<TempCluster, ClusterError> {
        if !bin.join("initdb").is_file() || !bin.join("postgres").is_file() {
            return Err(ClusterError::NotInstalled);
        }
        let user = if is_root() {
            Some(user_ids("postgres").ok_or(ClusterError::NoPostgresUser)?)
        } else {
            None
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "syncplan-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_error("remove an old server directory"))?;
        }
        std::fs::create_dir(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(io_error("give the server directory to the postgres user"))?;
        }
        let data = dir.join("data");
        let out = command_as(user, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(io_error("run initdb"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ClusterError::Initdb {
                dir: data,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        let mut server = command_as(user, &bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .arg("-p")
            .arg(PORT.to_string())
            .args([
                "-c",
                "listen_addresses=",
                // A throwaway server: the tests crash clients, never the server.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ]);
        let mut watchdog = Command::new("sh");
        watchdog
            .arg("-c")
            .arg(WATCHDOG)
            .arg("syncplan-pg-watchdog")
            .arg(&dir)
            .arg(std::process::id().to_string())
            .arg(server.get_program())
            .args(server.get_args())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let watchdog = watchdog.spawn().map_err(io_error("start the server"))?;
        let url = format!(
            "host={} port={PORT} user=postgres dbname=postgres",
            dir.display()
        );
        let mut cluster = TempCluster { dir, url, watchdog };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), ClusterError> {
        let started = Instant::now();
        loop {
            match postgres::Client::connect(&self.url, postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if let Ok(Some(status)) = self.watchdog.try_wait() {
                        return Err(ClusterError::NotReady {
                            reason: format!("the server exited ({status})"),
                            log: self.log(),
                        });
                    }
                    if started.elapsed() > START_TIMEOUT {
                        return Err(ClusterError::NotReady {
                            reason: format!("still refused after {START_TIMEOUT:?}: {e}"),
                            log: self.log(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The connection string (`host=<socket dir> port=5432 user=postgres
    /// dbname=postgres`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.watchdog.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// The server tests use: `SYNCPLAN_PG_URL` if set, otherwise one throwaway
/// server for this process, started on first use and stopped when the
/// process exits.
pub fn test_url() -> Result<String, String> {
    if let Ok(url) = std::env::var("SYNCPLAN_PG_URL") {
        return Ok(url);
    }
    static SHARED: OnceLock<Result<TempCluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| TempCluster::start().map_err(|e| e.to_string()))
        .as_ref()
        .map(|c| c.url().to_owned())
        .map_err(Clone::clone)
}

/// A schema name no other store uses: `prefix`, this process, a counter and
/// the time (so that runs against one server never meet).
pub fn unique_schema(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
