//! Every bad file is refused before the store is touched, with an error that
//! names the file and the reason and never shows the key: tampered,
//! truncated, wrong key, wrong recipient, unknown version, not a sealed
//! file, unknown sender, trailing bytes, oversized, and every single byte
//! flipped in turn.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sync_conformance::fixtures::hub_id;
use sync_core::SecurityKind;
use sync_transport_file::{
    FileError, FileRejection, PairKey, dry_run, import, install_pair_key, open_files,
    remove_pair_key, verify_file,
};

/// A world where node 0 has exported one packet with two changes for the
/// hub into `dir`.
fn exported(dir: &Path) -> (World, PathBuf) {
    let mut w = World::new(2);
    insert_note(&mut w.nodes[0], "first", t(0));
    insert_note(&mut w.nodes[0], "second", t(0));
    let exported = w.node_export(0, dir, t(1));
    assert_eq!(exported.files.len(), 1);
    (w, exported.files[0].clone())
}

/// Importing `file` at the hub is refused for `expected`, names the file,
/// shows no key, records a security event, and changes nothing.
fn assert_refused(w: &mut World, file: &Path, expected: fn(&FileRejection) -> bool) {
    let before = snapshot(&mut w.hub);
    let error = import(&mut w.hub, &[file.to_path_buf()], t(2)).unwrap_err();
    let reason = error
        .rejection()
        .unwrap_or_else(|| panic!("not a rejection: {error}"));
    assert!(expected(reason), "unexpected reason: {reason:?}");
    let message = error.to_string();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(message.contains(&name), "{message} does not name {name}");
    for key in &w.printable {
        assert!(
            !message.contains(&key[5..69]),
            "the key leaked into {message}"
        );
    }
    assert_eq!(
        snapshot(&mut w.hub),
        before,
        "a refused file changed the store"
    );
    // A dry run and a single-file check refuse it the same way.
    assert!(dry_run(&mut w.hub, &[file.to_path_buf()], t(2)).is_err());
    assert!(verify_file(&mut w.hub, file).is_err());
    let events = w.hub.security_events().unwrap();
    if !matches!(reason, FileRejection::MissingParts { .. }) {
        assert!(events.iter().any(|e| e.detail == message), "not logged");
    }
}

#[test]
fn a_tampered_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    let copy = edited_copy(&file, bad.path(), |b| {
        let i = b.len() - 20;
        b[i] ^= 1;
    });
    assert_refused(&mut w, &copy, |r| {
        matches!(r, FileRejection::Tampered { .. })
    });
}

#[test]
fn a_tampered_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    // A header value changed to another valid value: the seal catches it.
    let copy = edited_copy(&file, bad.path(), |b| {
        let text = String::from_utf8_lossy(b).into_owned();
        let at = text.find("entities: 2").unwrap() + "entities: ".len();
        b[at] = b'3';
    });
    assert_refused(&mut w, &copy, |r| {
        matches!(r, FileRejection::Tampered { .. })
    });
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    for keep in [len - 1, len / 2, 100, 0] {
        let copy = edited_copy(&file, bad.path(), |b| b.truncate(keep));
        assert_refused(&mut w, &copy, |r| {
            matches!(r, FileRejection::Truncated { .. })
        });
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    let copy = edited_copy(&file, bad.path(), |b| b.extend_from_slice(b"more"));
    assert_refused(&mut w, &copy, |r| {
        matches!(r, FileRejection::Tampered { .. })
    });
}

#[test]
fn a_file_sealed_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    // The hub holds another key for node 0 (a re-registration whose key was
    // never installed at the node).
    assert!(remove_pair_key(&mut w.hub, node_id(0)).unwrap());
    install_pair_key(&mut w.hub, node_id(0), &PairKey::generate().unwrap()).unwrap();
    assert_refused(
        &mut w,
        &file,
        |r| matches!(r, FileRejection::WrongKey { sender } if *sender == node_id(0)),
    );
    assert!(
        w.hub
            .security_events()
            .unwrap()
            .iter()
            .any(|e| e.kind == SecurityKind::AuthFailed)
    );
}

#[test]
fn a_file_for_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    // Node 1 is handed the hub's file from node 0.
    let before = snapshot(&mut w.nodes[1]);
    let error = import(&mut w.nodes[1], std::slice::from_ref(&file), t(2)).unwrap_err();
    assert!(matches!(
        error.rejection(),
        Some(FileRejection::WrongRecipient { recipient, local })
            if *recipient == hub_id() && *local == node_id(1)
    ));
    assert!(error.to_string().contains(&hub_id().to_string()));
    assert_eq!(snapshot(&mut w.nodes[1]), before);
}

#[test]
fn a_file_from_a_sender_without_a_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    remove_pair_key(&mut w.hub, node_id(0)).unwrap();
    assert_refused(
        &mut w,
        &file,
        |r| matches!(r, FileRejection::UnknownSender { sender } if *sender == node_id(0)),
    );
}

#[test]
fn an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    let copy = edited_copy(&file, bad.path(), |b| b[14] = b'7');
    assert_refused(
        &mut w,
        &copy,
        |r| matches!(r, FileRejection::UnknownVersion { found, supported: 1 } if found == "7"),
    );
    let error = import(&mut w.hub, &[copy], t(3)).unwrap_err().to_string();
    assert!(error.contains("version 7"), "{error}");
}

#[test]
fn a_file_that_is_not_a_sealed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = exported(dir.path());
    let other = dir.path().join("notes.syncpkt");
    std::fs::write(&other, b"just some text, not a packet\n").unwrap();
    assert_refused(&mut w, &other, |r| matches!(r, FileRejection::NotASyncFile));
}

#[test]
fn a_damaged_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    let copy = edited_copy(&file, bad.path(), |b| {
        let text = String::from_utf8_lossy(b).into_owned();
        let at = text.find("packet-no: ").unwrap() + "packet-no: ".len();
        b[at] = b'x';
    });
    assert_refused(&mut w, &copy, |r| {
        matches!(r, FileRejection::MalformedHeader { .. })
    });
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::with(1, sync_core::ConflictStrategy::ServerWins, |c| {
        let mut limits = c.limits;
        limits.max_envelope_bytes = 4096;
        c.limits(limits)
    });
    let data = sync_conformance::store_suite::values::noise(20_000, 5);
    let fields = sync_conformance::fixtures::record([
        ("title", "big".into()),
        ("data", sync_core::Value::Bytes(data)),
    ]);
    w.nodes[0]
        .insert(sync_conformance::fixtures::NOTE_SERVER_WINS, fields, t(0))
        .unwrap();
    let exported = w.node_export(0, dir.path(), t(1));
    assert_refused(&mut w, &exported.files[0], |r| {
        matches!(r, FileRejection::TooLarge { .. })
    });
}

#[test]
fn one_bad_file_among_good_ones_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, good) = exported(dir.path());
    insert_note(&mut w.nodes[0], "third", t(1));
    let later = w.node_export(0, dir.path(), t(2)).files[0].clone();
    let broken = edited_copy(&later, bad.path(), |b| {
        let i = b.len() - 1;
        b[i] ^= 0x80;
    });
    let before = snapshot(&mut w.hub);
    let error = import(&mut w.hub, &[good.clone(), broken.clone()], t(3)).unwrap_err();
    assert!(matches!(error, FileError::Rejected { ref file, .. } if file == &broken));
    assert_eq!(snapshot(&mut w.hub), before);
    // The good one alone applies.
    assert_eq!(import(&mut w.hub, &[good], t(3)).unwrap()[0].applied, 2);
}

/// Flips every byte of a sealed file in turn (header and body), once
/// inverting all its bits and once only the lowest (which keeps a hex digit
/// a hex digit, so the header still parses): each altered file is refused
/// and the store never changes.
#[test]
fn every_flipped_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = tempfile::tempdir().unwrap();
    let (mut w, file) = exported(dir.path());
    let original = std::fs::read(&file).unwrap();
    let target = bad.path().join(file.file_name().unwrap());
    let before = snapshot(&mut w.hub);
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    let flips = (0..original.len()).flat_map(|i| [(i, 0xffu8), (i, 0x01)]);
    let mut count = 0;
    for (i, mask) in flips {
        count += 1;
        let mut bytes = original.clone();
        bytes[i] ^= mask;
        std::fs::write(&target, &bytes).unwrap();
        let error = open_files(&mut w.hub, std::slice::from_ref(&target)).expect_err(&format!(
            "flipping byte {i} with {mask:#x} was not detected"
        ));
        let reason = error.rejection().expect("a rejection");
        let kind = format!("{reason:?}");
        let kind = kind.split([' ', '{', '(']).next().unwrap_or("").to_owned();
        *reasons.entry(kind).or_default() += 1;
    }
    eprintln!(
        "{count} flips of a {}-byte file refused: {reasons:?}",
        original.len()
    );
    assert_eq!(count, 2 * original.len());
    assert!(original.len() > 500);
    assert!(reasons["Tampered"] > 100, "{reasons:?}");
    assert!(reasons.contains_key("WrongRecipient") && reasons.contains_key("WrongKey"));
    assert_eq!(snapshot(&mut w.hub), before);
    // The untouched file still imports.
    assert_eq!(import(&mut w.hub, &[file], t(3)).unwrap()[0].applied, 2);
}
