//! The README's five-minute walk-through, run as written: every line of
//! its shell block, with the real binary on the path, in a fresh folder,
//! against a real HTTPS hub on 127.0.0.1 (on a free port instead of 8443).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{LIMIT, Server, Workspace, finish};

const README: &str = include_str!("../../README.md");
const SECTION: &str = "## Five minutes with the command line";

/// The lines of the walk-through's command block (the second `sh` block
/// of the section: the first installs the tool).
fn walkthrough() -> Vec<String> {
    let section = &README[README
        .find(SECTION)
        .expect("the README has the walk-through")..];
    let block = section
        .split("```sh\n")
        .nth(2)
        .and_then(|rest| rest.split("```").next())
        .expect("the walk-through's command block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn shell(ws: &Workspace, line: &str) -> Command {
    let bin_dir = std::path::Path::new(common::BIN)
        .parent()
        .expect("the binary's folder");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    command
        .args(["-c", line])
        .current_dir(ws.root.path())
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let ws = Workspace::new();
    let port = common::free_port().to_string();
    let lines = walkthrough();
    assert!(lines.len() > 20, "{lines:?}");
    let mut hub: Option<Server> = None;
    let mut outputs = Vec::new();
    for line in &lines {
        let line = line.replace("8443", &port);
        if let Some(background) = line.strip_suffix(" &") {
            let child = shell(&ws, &format!("exec {background}"))
                .spawn()
                .expect("sh runs");
            hub = Some(Server { child });
            let up = common::eventually(Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok()
            });
            assert!(up, "the hub did not start listening: {line}");
            continue;
        }
        if line == "kill %1" {
            hub.take().expect("the hub was started").kill();
            continue;
        }
        let run = finish(shell(&ws, &line).spawn().expect("sh runs"), LIMIT);
        assert_eq!(
            run.code,
            Some(0),
            "README line failed: {line}\n{}\n{}",
            run.stdout,
            run.stderr
        );
        outputs.push((line, run.stdout));
    }
    assert!(hub.is_none(), "the walk-through stops its hub");
    let said = |prefix: &str| -> String {
        outputs
            .iter()
            .filter(|(line, _)| line.starts_with(prefix))
            .map(|(_, out)| out.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Step 3: the note reached the hub.
    assert!(said("syncplan sql \"SELECT title, body FROM note\" --dir hub").contains("groceries"));
    // Step 4: the conflict was resolved by server-wins; LAPTOP-1's edit stands everywhere.
    let audit = said("syncplan audit --dir hub");
    assert!(
        audit.starts_with("1 conflict resolution(s)") && audit.contains("server-wins"),
        "{audit}"
    );
    for dir in ["hub", "laptop-1", "laptop-2"] {
        let rows = ws.rows(dir, "SELECT body FROM note WHERE title = 'groceries'");
        assert_eq!(rows, vec![vec![serde_json::json!("milk, eggs")]], "{dir}");
    }
    assert!(said("syncplan node list --dir hub").contains("LAPTOP-2"));
    // Step 5: the note written in the field reached the hub through the file,
    // and the reply acknowledged it.
    assert!(said("syncplan import stick/*.syncpkt --dry-run").contains("would insert 1"));
    assert_eq!(
        ws.rows(
            "hub",
            "SELECT count(*) FROM note WHERE title = 'written in the field'"
        )[0][0],
        1
    );
    let status = ws.ok(&["status", "--json", "--dir", "laptop-2"]).json();
    assert_eq!(status["peers"][0]["pending"], 0);
}
