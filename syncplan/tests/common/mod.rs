//! Running the real `syncplan` binary against real SQLite files in a
//! temporary directory, and a real HTTPS hub on 127.0.0.1, bounded in time
//! and killed at the end.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_syncplan");

/// The longest any one command may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The application schema the tests use.
pub const NOTE_SCHEMA: &str =
    "CREATE TABLE note(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT)";

/// A finished run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the command succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "command failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the command failed.
    pub fn failed(self) -> Run {
        assert_ne!(self.code, Some(0), "command succeeded:\n{}", self.stdout);
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary working directory with the helpers to run commands in it.
pub struct Workspace {
    pub root: tempfile::TempDir,
    servers: Vec<Server>,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            root: tempfile::tempdir().expect("a temporary directory"),
            servers: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Runs `syncplan ARGS` in the workspace, bounded by [`LIMIT`].
    pub fn run(&self, args: &[&str]) -> Run {
        let child = Command::new(BIN)
            .args(args)
            .current_dir(self.root.path())
            .env_remove("RUST_LOG")
            .env_remove("SYNCPLAN_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        finish(child, LIMIT)
    }

    /// Runs a `syncplan` command and expects success.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.run(args).ok()
    }

    /// A hub in `dir` with the note table tracked, listening on a free
    /// port of 127.0.0.1 (not started).
    pub fn hub(&self, dir: &str) -> u16 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        self.ok(&[
            "hub", "init", dir, "--code", "HUB", "--name", "Test hub", "--listen", &listen,
        ]);
        self.ok(&["sql", NOTE_SCHEMA, "--dir", dir]);
        self.ok(&["track", "note", "--as", "Note", "--dir", dir]);
        port
    }

    /// Registers node `code` at the hub in `hub` and sets it up in `dir`
    /// with the note table tracked.
    pub fn node(&self, hub: &str, code: &str, dir: &str) {
        let credentials = self.ok(&["node", "add", code, "--json", "--dir", hub]);
        let file = self.path(&format!("{code}.json"));
        std::fs::write(&file, &credentials.stdout).expect("credentials written");
        self.ok(&[
            "init",
            dir,
            "--credentials",
            file.to_str().expect("utf-8 path"),
        ]);
        self.ok(&["sql", NOTE_SCHEMA, "--dir", dir]);
        self.ok(&["track", "note", "--as", "Note", "--dir", dir]);
    }

    /// Starts `syncplan hub serve DIR` and waits until it listens.
    pub fn serve(&mut self, dir: &str) {
        self.serve_with(dir, &[]);
    }

    /// Starts `syncplan hub serve DIR ARGS...` and waits until it listens.
    pub fn serve_with(&mut self, dir: &str, args: &[&str]) {
        let mut child = Command::new(BIN)
            .args(["hub", "serve", dir])
            .args(args)
            .current_dir(self.root.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server { child };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => assert!(line.contains("serving on https://127.0.0.1:"), "{line}"),
            Err(_) => {
                server.kill();
                panic!("the hub did not start within 30 s");
            }
        }
        self.servers.push(server);
    }

    /// Stops every server started.
    pub fn stop_servers(&mut self) {
        for mut server in self.servers.drain(..) {
            server.kill();
        }
    }

    /// A query's rows on `dir`'s database, through `syncplan sql --json`.
    pub fn rows(&self, dir: &str, query: &str) -> Vec<Vec<serde_json::Value>> {
        let run = self.ok(&["sql", query, "--json", "--dir", dir]);
        serde_json::from_value(run.json()["rows"].clone()).expect("rows")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        self.stop_servers();
    }
}

/// A background `syncplan` process, killed when dropped.
pub struct Server {
    pub child: Child,
}

impl Server {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for `child` for at most `limit`, killing it past that.
pub fn finish(mut child: Child, limit: Duration) -> Run {
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let started = Instant::now();
    let status = loop {
        match child.try_wait().expect("waiting for the child") {
            Some(status) => break Some(status),
            None if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    assert!(
        status.is_some(),
        "timed out after {limit:?}:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn reader(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `check` every 50 ms for up to `limit`.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}
