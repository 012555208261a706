//! Export of a selection (`export_selected`): the file holds every selected
//! pending change and nothing else, and the unselected ones stay pending
//! after the reply acknowledges the file.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use sync_conformance::fixtures::{NOTE_LAST_WRITER_WINS, NOTE_SERVER_WINS, hub_id};
use sync_core::{EntityKey, Selection};
use sync_transport_file::{ExportOptions, answer, export_selected, import, open_files};

/// The keys of the changes the export in `files` carries, read at the hub.
fn keys_in(w: &mut World, files: &[std::path::PathBuf]) -> BTreeSet<EntityKey> {
    let opened = open_files(&mut w.hub, files).expect("the export opens");
    assert_eq!(opened.len(), 1);
    sync_conformance::wire::keys_in(&opened[0].envelope)
}

// Feature: sync-system, Property 35: File export completeness
proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    #[test]
    fn a_selected_export_holds_every_selected_change_and_nothing_else(
        kinds in prop::collection::vec(any::<bool>(), 1..12),
    ) {
        let mut w = World::new(1);
        let mut written = Vec::new();
        for (i, selected) in kinds.iter().enumerate() {
            let ty = if *selected { NOTE_SERVER_WINS } else { NOTE_LAST_WRITER_WINS };
            let id = w.nodes[0].insert(ty, note(&format!("note {i}")), t(0)).expect("insert");
            written.push((EntityKey::new(ty, id), *selected));
        }
        let selection = Selection::all().with_types([NOTE_SERVER_WINS]);
        let stick = tempfile::tempdir().expect("dir");
        let exported = export_selected(
            &mut w.nodes[0], hub_id(), stick.path(), &ExportOptions::default(), &selection, t(1),
        ).expect("export");
        let expected: BTreeSet<EntityKey> =
            written.iter().filter(|(_, s)| *s).map(|(k, _)| k.clone()).collect();
        prop_assert_eq!(keys_in(&mut w, &exported.files), expected);
        // Exported changes stay pending until the reply acknowledges them.
        prop_assert_eq!(w.nodes[0].pending_count(hub_id()).unwrap(), kinds.len() as u64);

        let answers = answer(&mut w.hub, &exported.files, stick.path(), &ExportOptions::default(), t(2))
            .expect("the hub answers");
        prop_assert_eq!(answers.len(), 1);
        import(&mut w.nodes[0], &answers[0].reply_files, t(3)).expect("the reply imports");
        // Acknowledged: the changes before the first unselected one. From
        // there on everything stays pending, every unselected change with it.
        let first_skipped = kinds.iter().position(|s| !s).unwrap_or(kinds.len());
        prop_assert_eq!(
            w.nodes[0].pending_count(hub_id()).unwrap(),
            (kinds.len() - first_skipped) as u64
        );
        prop_assert_eq!(w.hub.store().entity_count(), expected_len(&kinds));
    }
}

fn expected_len(kinds: &[bool]) -> usize {
    kinds.iter().filter(|s| **s).count()
}
