//! `syncplan`: run a hub and nodes on SQLite from the command line.
//!
//! `syncplan --help` lists the commands; every command's `--help` has an
//! example. `syncplan demo` shows the whole thing in one go.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
