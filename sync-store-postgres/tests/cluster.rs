//! The throwaway server: without PostgreSQL's binaries it fails and says how
//! to install them; with them it starts, serves, and is gone when dropped.

use sync_store_postgres::cluster::{ClusterError, TempCluster};

#[test]
fn missing_binaries_fail_with_the_install_command() {
    let empty = tempfile::tempdir().expect("temporary directory");
    let error = TempCluster::start_with(empty.path()).expect_err("no binaries there");
    assert!(matches!(error, ClusterError::NotInstalled), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("apt-get install -y postgresql"),
        "{message}"
    );
    assert!(message.contains("SYNCPLAN_PG_URL"), "{message}");
}

#[test]
fn a_throwaway_server_serves_and_is_removed_when_dropped() {
    if std::env::var_os("SYNCPLAN_PG_URL").is_some() {
        // Pointed at an existing server: the suites use that one; this case
        // still needs the binaries, which that setup may not have.
        return;
    }
    let cluster = TempCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let mut client = postgres::Client::connect(cluster.url(), postgres::NoTls).expect("connect");
    let one: i32 = client.query_one("SELECT 1", &[]).expect("query").get(0);
    assert_eq!(one, 1);
    drop(client);
    let url = cluster.url().to_owned();
    let dir = url
        .split_whitespace()
        .find_map(|p| p.strip_prefix("host="))
        .expect("a socket directory")
        .to_owned();
    assert!(std::path::Path::new(&dir).exists());
    drop(cluster);
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is left behind");
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err());
}
