//! The command line: arguments (clap), logging, dispatch, and how errors
//! are printed.

mod bench;
mod demo;
mod failure;
mod files;
mod hub;
mod inspect;
mod layout;
mod node;
mod output;
mod records;
mod rejected;
mod serve;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use failure::{Context, Result};
use layout::Strategy;
use output::Output;
use records::Keep;

/// Offline-first sync of SQLite databases between a hub and its nodes.
///
/// A hub keeps the reference copy; each node works on its own SQLite
/// database, offline if need be, and syncs its changes with the hub.
/// The application keeps writing plain SQL: tracked tables are captured
/// by triggers.
#[derive(Parser, Debug)]
#[command(
    name = "syncplan",
    version,
    propagate_version = true,
    after_help = "Examples:\n  syncplan demo                               see a hub and two nodes sync, with a conflict\n  syncplan hub init hub --code HUB            create a hub in ./hub\n  syncplan node add DESKTOP-1 --dir hub --json > desktop-1.json\n  syncplan init desktop-1 --credentials desktop-1.json\n  syncplan status --dir desktop-1\n\nEvery command has --help with an example."
)]
struct Cli {
    /// More log output on standard error: -v info, -vv debug, -vvv trace
    /// (RUST_LOG overrides).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and administer a hub.
    #[command(subcommand)]
    Hub(HubCommand),
    /// Register, list and revoke the hub's nodes (in the hub's directory).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Set up a node's directory from the credentials `syncplan node add` printed.
    #[command(
        after_help = "Example:\n  syncplan node add DESKTOP-1 --dir hub --json > desktop-1.json   (at the hub)\n  syncplan init desktop-1 --credentials desktop-1.json"
    )]
    Init {
        /// The new node's directory (created; must not hold a syncplan directory).
        dir: PathBuf,
        /// The JSON file `syncplan node add --json` wrote.
        #[arg(long, value_name = "FILE")]
        credentials: PathBuf,
        /// Trust the hub's certificate through this CA certificate (PEM), for a
        /// hub whose certificate was given to `hub init` (a self-signed one is
        /// pinned by the fingerprint in the credentials).
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Sync with the hub over HTTPS: send what is queued, receive what is new.
    #[command(
        after_help = "Example:\n  syncplan sync --dir desktop-1\n  syncplan sync --json --dir desktop-1\n  syncplan sync --watch --interval 300 --dir desktop-1    (until Ctrl-C)\n\nPrints one line: sent, received, conflicts, retries, time. Large syncs show a progress bar."
    )]
    Sync {
        /// Keep syncing: every --interval, and as soon as the hub has news (live push).
        #[arg(long)]
        watch: bool,
        /// Seconds between sessions with --watch.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        interval: u64,
        /// Failed exchanges a session tries before giving up (with backoff).
        #[arg(long, default_value_t = 4, value_name = "N")]
        attempts: u32,
        /// The hub's URL, instead of the one in the node's configuration.
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Write the next packet as sealed files, to carry by hand (USB stick, e-mail).
    #[command(
        after_help = "Example:\n  syncplan export /media/usb --dir desktop-1              (a node: for its hub)\n  syncplan export /media/usb --to DESKTOP-1 --dir hub      (the hub: for one node)\n  syncplan export /media/usb --types Order,OrderLine --since 2026-12-01T00:00:00Z --dir desktop-1\n\nThe changes stay queued until the other side's reply is imported; with --types or --since, the changes left out stay queued for a later export or sync."
    )]
    Export {
        /// The folder to write the files into (created if missing).
        outdir: PathBuf,
        /// At the hub: the node the files are for (code or id).
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Only changes of these entity types (comma-separated, as tracked
        /// with `track --as`).
        #[arg(long, value_name = "TYPES", value_delimiter = ',')]
        types: Vec<String>,
        /// Only changes stored here at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<syncplan::Timestamp>,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Verify and apply sealed files; at the hub, also write the reply for the node.
    #[command(
        after_help = "Example:\n  syncplan import /media/usb/*.syncpkt --dry-run --dir hub\n  syncplan import /media/usb/*.syncpkt --dir hub            (writes the reply beside them)\n  syncplan import /media/usb/reply/*.syncpkt --dir desktop-1"
    )]
    Import {
        /// The files (all parts of an export).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Report what the files would insert, update, delete and which conflicts they would raise; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At the hub: where to write the reply (default: beside the first file).
        #[arg(long, value_name = "DIR")]
        reply_dir: Option<PathBuf>,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Give this node the token `syncplan node token` printed at the hub.
    #[command(
        name = "set-token",
        after_help = "Example:\n  syncplan set-token eyJ...  --dir desktop-1"
    )]
    SetToken {
        /// The token.
        token: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Sync a table of the application's database: its writes are captured by triggers.
    #[command(
        after_help = "Example:\n  syncplan track daily_report --as DailyReport --dir desktop-1\n  syncplan track notes --exclude draft --strategy last-writer-wins --dir hub\n\nTrack the same tables, with the same strategies, at the hub and on every node."
    )]
    Track {
        /// The table (it must exist; create it with your application or `syncplan sql`).
        table: String,
        /// The entity type name it syncs as (default: the table's name).
        #[arg(long = "as", value_name = "TYPE")]
        type_name: Option<String>,
        /// A column that stays on this database only (repeatable).
        #[arg(long, value_name = "COLUMN")]
        exclude: Vec<String>,
        /// How conflicts on this type are resolved (default: server-wins).
        #[arg(long, value_enum)]
        strategy: Option<Strategy>,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Run plain SQL on the directory's database (a query prints its rows).
    #[command(
        after_help = "Example:\n  syncplan sql \"CREATE TABLE note(id INTEGER PRIMARY KEY, text TEXT)\" --dir desktop-1\n  syncplan sql \"INSERT INTO note(text) VALUES ('hello')\" --dir desktop-1\n  syncplan sql \"SELECT * FROM note\" --json --dir desktop-1"
    )]
    Sql {
        /// One statement, or several separated by semicolons.
        statements: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// What this hub or node is, what waits to be sent, when it last synced.
    #[command(
        after_help = "Example:\n  syncplan status --dir desktop-1\n  syncplan status --json --dir hub"
    )]
    Status {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Conflicts waiting for a person (types with the manual strategy).
    #[command(subcommand)]
    Conflicts(ConflictsCommand),
    /// Changes a store refused (a constraint of the application's schema), kept with the reason.
    #[command(subcommand)]
    Rejected(RejectedCommand),
    /// The versions kept for one entity: the current one and every losing one.
    #[command(
        after_help = "Example:\n  syncplan history DailyReport/0190c7e2-5b1a-7c3e-8f00-1a2b3c4d5e6f --dir hub\n  syncplan history 0190c7e2-5b1a-7c3e-8f00-1a2b3c4d5e6f --json --dir hub"
    )]
    History {
        /// TYPE/UUID, or the UUID alone.
        entity: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Every conflict resolution, and the security log.
    #[command(
        after_help = "Example:\n  syncplan audit --dir hub\n  syncplan audit --json --dir hub"
    )]
    Audit {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print a packet, or a sealed file's readable header, as JSON in the envelope shape of the specification.
    #[command(
        after_help = "Example:\n  syncplan inspect /media/usb/0000000003-packet-....syncpkt\n  syncplan inspect packet.bin"
    )]
    Inspect {
        /// The file.
        file: PathBuf,
    },
    /// A hub and two nodes on SQLite, offline edits, a conflict, sync, explained.
    #[command(
        after_help = "Example:\n  cargo run --release -p syncplan -- demo\n  syncplan demo --keep /tmp/demo    (keep the databases to look at them)"
    )]
    Demo {
        /// Keep the hub's and nodes' directories here instead of removing them.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Measure sync speed against plain SQLite on this machine, in one run.
    #[command(
        after_help = "Example:\n  cargo run --release -p syncplan -- bench --changes 200000\n  cargo run --release -p syncplan -- bench --transport https\n\nPrints one key=value line per figure (see BENCHMARKS.md); every ratio is against a plain SQLite upsert of the same rows measured in the same run. Runs on temporary files. Build with --release: a debug build is many times slower."
    )]
    Bench {
        /// Entity changes to write and sync.
        #[arg(long, default_value_t = 1_000_000, value_name = "N")]
        changes: usize,
        /// How the node's packets reach the hub.
        #[arg(long, value_enum, default_value_t = bench::BenchTransport::InProcess)]
        transport: bench::BenchTransport,
        /// Exchanges with nothing to send, for the idle latency figures.
        #[arg(long, default_value_t = bench::IDLE_EXCHANGES, value_name = "N")]
        idle: usize,
    },
}

#[derive(Subcommand, Debug)]
enum HubCommand {
    /// Create a hub's directory: its database and configuration.
    #[command(
        after_help = "Example:\n  syncplan hub init hub --code HUB --name \"Central office\" --listen 0.0.0.0:8443 --url https://hub.example.com:8443"
    )]
    Init {
        /// The new hub's directory (created; must not hold a syncplan directory).
        dir: PathBuf,
        /// The hub's code.
        #[arg(long, default_value = "HUB")]
        code: String,
        /// The hub's display name.
        #[arg(long, default_value = "Hub")]
        name: String,
        /// The address `hub serve` listens on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// The URL nodes use to reach it (default: https:// and the listen address).
        #[arg(long)]
        url: Option<String>,
        /// The TLS certificate chain (PEM) to serve with (default: a self-signed
        /// certificate is generated, and nodes pin its fingerprint).
        #[arg(long, value_name = "PEM", requires = "key")]
        cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, value_name = "PEM", requires = "cert")]
        key: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Serve the hub over HTTPS until Ctrl-C.
    #[command(
        after_help = "Example:\n  syncplan hub serve hub\n  syncplan hub serve hub --listen 0.0.0.0:8443\n  syncplan hub serve hub --postgres 'host=db.internal user=syncplan dbname=syncplan'"
    )]
    Serve {
        /// The hub's directory.
        dir: PathBuf,
        /// The address to listen on, instead of the configured one (port 0: any free port).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<String>,
        /// Keep the hub's sync state in PostgreSQL instead of the directory's
        /// SQLite database: a libpq connection string (`host=... user=...
        /// dbname=...`) or a postgresql:// URL. The directory still holds the
        /// hub's identity, TLS certificate and the nodes (`node add`): each
        /// start registers the nodes and signing keys PostgreSQL lacks.
        /// Several processes may serve the same database and schema.
        #[cfg(feature = "postgres")]
        #[arg(long, value_name = "CONNINFO")]
        postgres: Option<String>,
        /// The PostgreSQL schema holding the sync tables.
        #[cfg(feature = "postgres")]
        #[arg(
            long,
            value_name = "SCHEMA",
            default_value = "syncplan",
            requires = "postgres"
        )]
        schema: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Record a schema migration: applied to the hub's database now, and sent
    /// to every node whose schema is older at its next sync, before any
    /// change (`syncplan sync` applies it). Restart `hub serve` to distribute it.
    #[command(
        after_help = "Example:\n  syncplan hub migrate 1.1.0 --sql 'ALTER TABLE note ADD COLUMN tag TEXT' --description 'notes get a tag' --dir hub"
    )]
    Migrate {
        /// The schema version it brings: later than the hub's, same major.
        #[arg(value_name = "VERSION")]
        schema: String,
        /// The SQLite script, run in one transaction on every database.
        #[arg(long)]
        sql: String,
        /// What it changes, for a person.
        #[arg(long)]
        description: Option<String>,
        /// A table the script creates that syncs from then on (repeatable).
        #[arg(long)]
        track: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Make a new token signing key; tokens signed with the old one stay valid until they expire.
    #[command(after_help = "Example:\n  syncplan hub rotate-key --dir hub")]
    RotateKey {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Register a node and print its credentials (once).
    #[command(
        after_help = "Example:\n  syncplan node add DESKTOP-1 --name \"Site office\" --dir hub --json > desktop-1.json\n\nThen, on the node: syncplan init desktop-1 --credentials desktop-1.json"
    )]
    Add {
        /// The node's code, e.g. DESKTOP-1 (unique at this hub).
        code: String,
        /// Its display name (default: the code).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Every node: packet numbers, last sync in and out, pending changes, the oldest unacknowledged change.
    #[command(
        after_help = "Example:\n  syncplan node list --dir hub\n  syncplan node list --json --dir hub"
    )]
    List {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Issue a fresh token for a registered node (its old one expired or was lost).
    #[command(
        after_help = "Example:\n  syncplan node token DESKTOP-1 --dir hub\n\nThen, on the node: syncplan set-token TOKEN --dir desktop-1"
    )]
    Token {
        /// The node's code or id.
        node: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Revoke a node: its packets are refused from now on.
    #[command(after_help = "Example:\n  syncplan node revoke DESKTOP-1 --dir hub")]
    Revoke {
        /// The node's code or id.
        node: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
enum ConflictsCommand {
    /// List the conflicts waiting for a decision.
    #[command(after_help = "Example:\n  syncplan conflicts list --dir hub")]
    List {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Decide a conflict; the decision reaches every node at its next sync.
    #[command(
        after_help = "Example:\n  syncplan conflicts resolve 5f0c...-... --keep remote --dir hub"
    )]
    Resolve {
        /// The conflict's id (from `conflicts list`).
        id: String,
        /// Which version to keep.
        #[arg(long, value_enum)]
        keep: Keep,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
enum RejectedCommand {
    /// List the rejected changes: which side refused which version, and why.
    #[command(
        after_help = "Example:\n  syncplan rejected list --dir hub\n  syncplan rejected list --json --dir desktop-1"
    )]
    List {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Try a rejected change again, once its cause is fixed.
    #[command(after_help = "Example:\n  syncplan rejected retry 7d3c...-... --dir hub")]
    Retry {
        /// The rejected change's id (from `rejected list`).
        id: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Give up on a rejected change; its version moves to the entity's history.
    #[command(after_help = "Example:\n  syncplan rejected discard 7d3c...-... --dir hub")]
    Discard {
        /// The rejected change's id (from `rejected list`).
        id: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// The directory a command works in.
#[derive(Args, Debug)]
struct DirArg {
    /// The hub's or node's directory.
    #[arg(
        short = 'C',
        long = "dir",
        env = "SYNCPLAN_DIR",
        default_value = ".",
        value_name = "DIR"
    )]
    dir: PathBuf,
}

/// Machine-readable output.
#[derive(Args, Debug)]
struct JsonFlag {
    /// Print the result as JSON, for scripts.
    #[arg(long)]
    json: bool,
}

impl JsonFlag {
    fn output(&self) -> Output {
        Output { json: self.json }
    }
}

/// Parses the arguments, runs the command, prints an error as one message
/// with its causes, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.render());
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Hub(HubCommand::Init {
            dir,
            code,
            name,
            listen,
            url,
            cert,
            key,
            json,
        }) => hub::init(
            hub::HubInit {
                dir: &dir,
                code: &code,
                name: &name,
                listen: &listen,
                url: url.as_deref(),
                tls: cert.as_deref().zip(key.as_deref()),
            },
            &json.output(),
        ),
        Command::Hub(HubCommand::Serve {
            dir,
            listen,
            #[cfg(feature = "postgres")]
            postgres,
            #[cfg(feature = "postgres")]
            schema,
            json,
        }) => {
            #[cfg(feature = "postgres")]
            if let Some(conninfo) = postgres {
                return runtime()?.block_on(serve::serve_postgres(
                    &dir,
                    listen.as_deref(),
                    conninfo,
                    schema,
                    &json.output(),
                ));
            }
            runtime()?.block_on(serve::serve(&dir, listen.as_deref(), &json.output()))
        }
        Command::Hub(HubCommand::Migrate {
            schema,
            sql,
            description,
            track,
            dir,
            json,
        }) => hub::migrate(
            &dir.dir,
            hub::MigrateArgs {
                version: &schema,
                sql: &sql,
                description: description.as_deref(),
                track: &track,
            },
            &json.output(),
        ),
        Command::Hub(HubCommand::RotateKey { dir, json }) => {
            serve::rotate_key(&dir.dir, &json.output())
        }
        Command::Sync {
            watch,
            interval,
            attempts,
            url,
            dir,
            json,
        } => runtime()?.block_on(sync::sync(
            &dir.dir,
            sync::SyncArgs {
                watch,
                interval: Duration::from_secs(interval.max(1)),
                attempts,
                url,
            },
            &json.output(),
        )),
        Command::Export {
            outdir,
            to,
            types,
            since,
            dir,
            json,
        } => {
            let mut selection = syncplan::Selection::all();
            if !types.is_empty() {
                selection = selection.with_types(types);
            }
            if let Some(since) = since {
                selection = selection.since(since);
            }
            files::export(&dir.dir, &outdir, to.as_deref(), &selection, &json.output())
        }
        Command::Import {
            files,
            dry_run,
            reply_dir,
            dir,
            json,
        } => files::import(
            &dir.dir,
            &files,
            dry_run,
            reply_dir.as_deref(),
            &json.output(),
        ),
        Command::Node(command) => run_node(command),
        Command::Init {
            dir,
            credentials,
            ca,
            json,
        } => node::init(&dir, &credentials, ca.as_deref(), &json.output()),
        Command::Track {
            table,
            type_name,
            exclude,
            strategy,
            dir,
            json,
        } => node::track(
            node::Track {
                dir: &dir.dir,
                table: &table,
                type_name: type_name.as_deref(),
                exclude: &exclude,
                strategy,
            },
            &json.output(),
        ),
        Command::SetToken { token, dir, json } => node::set_token(&dir.dir, &token, &json.output()),
        Command::Sql {
            statements,
            dir,
            json,
        } => node::sql(&dir.dir, &statements, &json.output()),
        Command::Status { dir, json } => node::status(&dir.dir, &json.output()),
        Command::Conflicts(ConflictsCommand::List { dir, json }) => {
            records::list_conflicts(&dir.dir, &json.output())
        }
        Command::Conflicts(ConflictsCommand::Resolve {
            id,
            keep,
            dir,
            json,
        }) => records::resolve_conflict(&dir.dir, &id, keep, &json.output()),
        Command::Rejected(RejectedCommand::List { dir, json }) => {
            rejected::list(&dir.dir, &json.output())
        }
        Command::Rejected(RejectedCommand::Retry { id, dir, json }) => {
            rejected::retry(&dir.dir, &id, &json.output())
        }
        Command::Rejected(RejectedCommand::Discard { id, dir, json }) => {
            rejected::discard(&dir.dir, &id, &json.output())
        }
        Command::History { entity, dir, json } => {
            records::history(&dir.dir, &entity, &json.output())
        }
        Command::Audit { dir, json } => records::audit(&dir.dir, &json.output()),
        Command::Inspect { file } => inspect::inspect(&file),
        Command::Demo { keep } => runtime()?.block_on(demo::run(keep.as_deref())),
        Command::Bench {
            changes,
            transport,
            idle,
        } => bench::run(changes, transport, idle),
    }
}

fn run_node(command: NodeCommand) -> Result<()> {
    match command {
        NodeCommand::Add {
            code,
            name,
            dir,
            json,
        } => hub::add_node(&dir.dir, &code, name.as_deref(), &json.output()),
        NodeCommand::List { dir, json } => hub::list_nodes(&dir.dir, &json.output()),
        NodeCommand::Token { node, dir, json } => hub::token(&dir.dir, &node, &json.output()),
        NodeCommand::Revoke { node, dir, json } => {
            hub::revoke_node(&dir.dir, &node, &json.output())
        }
    }
}

/// The async runtime for the commands that talk to the network.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Parses `--since`: an RFC 3339 time.
fn parse_since(text: &str) -> std::result::Result<syncplan::Timestamp, String> {
    syncplan::Timestamp::parse_rfc3339(text).ok_or_else(|| {
        format!("{text:?} is not an RFC 3339 time; write it like 2026-12-01T08:00:00Z")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
