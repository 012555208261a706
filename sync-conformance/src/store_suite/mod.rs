//! The store suite: every method contract of [`Store`] and [`StoreTxn`], as
//! public generic functions, plus engine-level cases run on the store.
//!
//! Each case takes a factory that returns a fresh, empty store and panics
//! (through `assert!`) when the store breaks the contract. Errors are checked
//! by [`sync_core::StoreErrorKind`], never by message text.
//! [`crate::store_suite!`] stamps out one `#[test]` per case:
//!
//! ```ignore
//! sync_conformance::store_suite!(memory, sync_store_memory::MemoryStore::new);
//! ```

pub mod atomicity;
pub mod engine;
pub mod entities;
pub mod fidelity;
pub mod history;
pub mod parked;
pub mod pending;
pub mod registry;
pub mod scopes;
pub mod values;

use sync_core::{Store, StoreTxn};

/// Stamps out the store suite: one `#[test]` per case, in a module named
/// `$name`, each calling the case with `$make` (an expression usable as
/// `impl Fn() -> S`, e.g. `MemoryStore::new` or a closure).
#[macro_export]
macro_rules! store_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__store_cases! { $make;
                registry::empty_store_has_no_local_node,
                registry::set_local_node_round_trips,
                registry::unknown_peer_is_none,
                registry::put_peer_round_trips_every_field,
                registry::put_peer_replaces_existing,
                registry::peers_are_ordered_by_id,
                registry::peer_state_survives_many_updates,
                registry::peer_lists_read_back_after_any_change,
                registry::meta_round_trips_and_lists_by_prefix,
                registry::dropped_txn_discards_meta,
                entities::empty_store_has_last_seq_zero,
                entities::missing_entity_is_none,
                entities::referencing_finds_a_parents_children,
                entities::put_entity_assigns_increasing_seq,
                entities::put_entity_returns_stored_seq,
                entities::put_entity_sets_created_seq_on_insert,
                entities::put_entity_keeps_created_seq_on_update,
                entities::put_entity_records_source,
                entities::put_entity_records_stored_at,
                entities::put_entity_keeps_clock,
                entities::put_entity_keeps_field_stamps,
                entities::put_entity_replaces_version_whole,
                entities::tombstones_are_kept,
                entities::seq_above_every_committed_after_rollback,
                entities::reads_see_own_writes,
                entities::entities_pages_by_id,
                entities::entities_cursor_need_not_exist,
                entities::entities_are_per_type,
                entities::entities_limit_zero_is_empty,
                entities::many_entity_types,
                pending::pending_is_ascending_by_seq,
                pending::pending_respects_limit,
                pending::pending_respects_after_seq,
                pending::pending_skips_changes_from_the_peer,
                pending::pending_resends_own_changes_up_to_mark,
                pending::pending_sends_changes_from_one_peer_to_others,
                pending::pending_coalesces_writes_to_one_entity,
                pending::pending_after_local_update_of_peer_change,
                pending::pending_limit_zero_is_empty,
                pending::count_pending_ignores_limit,
                pending::count_pending_matches_pending,
                pending::pending_for_peer_state_round_trip,
                pending::visit_pending_matches_pending_and_stops,
                pending::count_pending_upto_counts_a_range,
                atomicity::dropped_txn_discards_local_node,
                atomicity::dropped_txn_discards_peer,
                atomicity::dropped_txn_discards_peer_update,
                atomicity::dropped_txn_discards_new_entity,
                atomicity::dropped_txn_discards_entity_update,
                atomicity::dropped_txn_discards_version,
                atomicity::dropped_txn_discards_audit,
                atomicity::dropped_txn_discards_open_conflict,
                atomicity::dropped_txn_restores_taken_conflict,
                atomicity::dropped_txn_discards_park,
                atomicity::dropped_txn_restores_replaced_park,
                atomicity::dropped_txn_restores_taken_parked,
                atomicity::dropped_txn_restores_unparked,
                atomicity::dropped_txn_discards_security_event,
                atomicity::dropped_txn_discards_every_kind_at_once,
                atomicity::txn_abandoned_after_error_leaves_nothing,
                atomicity::commit_makes_every_kind_visible,
                atomicity::committed_txn_survives_later_rollback,
                history::versions_round_trip_every_field,
                history::versions_are_per_key_oldest_first,
                history::audit_round_trips_every_field,
                history::audit_log_pages_oldest_first,
                history::open_conflicts_put_list_take,
                history::take_unknown_conflict_is_none,
                history::security_events_round_trip_oldest_first,
                history::rejected_round_trip_replace_and_take,
                history::dropped_txn_restores_rejected,
                parked::empty_store_has_nothing_parked,
                parked::park_then_take_by_parent,
                parked::park_replaces_same_child,
                parked::take_parked_leaves_other_parents,
                parked::unpark_drops_child,
                parked::unpark_missing_is_noop,
                fidelity::soft_deletion_is_visible_to_reads,
                fidelity::removal_is_visible_to_reads,
                fidelity::unknown_fields_are_kept,
                values::every_value_kind_round_trips,
                values::extreme_scalars_round_trip,
                values::large_text_round_trips,
                values::large_bytes_round_trip,
                values::nested_lists_and_records_round_trip,
                values::many_fields_round_trip,
                engine::engine_hub_and_nodes_converge,
                engine::engine_packet_numbers_and_acks_persist,
                engine::engine_duplicate_packet_changes_nothing,
                engine::engine_parents_travel_before_children,
                engine::engine_children_deleted_with_a_losing_parent_come_back,
                engine::engine_orphaned_child_is_deleted_and_comes_back_with_its_parent,
                engine::engine_server_wins,
                engine::engine_last_writer_wins_with_skewed_clocks,
                engine::engine_keep_both_keeps_loser_copy,
                engine::engine_manual_queues_and_resolves,
                engine::engine_custom_resolver_merges,
                engine::engine_field_merge_keeps_both_fields,
                engine::engine_failed_batch_writes_nothing,
                engine::engine_crash_dropping_txn_loses_only_uncommitted,
                engine::engine_crash_at_every_point_of_apply,
                engine::engine_crash_at_every_point_of_build,
                engine::engine_restart_resumes_sync,
                engine::engine_large_entity_syncs,
                engine::engine_refused_change_is_quarantined,
                engine::engine_node_refusal_is_reported_to_the_hub,
                engine::engine_parked_change_is_visible_and_expires,
                engine::engine_selected_packet_leaves_the_rest_pending,
                engine::engine_catch_up_progress_counts_down,
                engine::engine_idle_exchange_commits_once_at_the_hub,
                scopes::engine_scopes_move_entities_in_and_out,
            }
        }
    };
}

/// Implementation detail of [`store_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    ($make:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::store_suite::$module::$case($make);
            }
        )*
    };
}

/// Runs `f` in a transaction and commits it.
pub(crate) fn write<S: Store, R>(store: &mut S, f: impl FnOnce(&mut S::Txn<'_>) -> R) -> R {
    let mut txn = store.begin().expect("begin");
    let result = f(&mut txn);
    txn.commit().expect("commit");
    result
}

/// Runs `f` in a transaction that is dropped without commit.
pub(crate) fn abandon<S: Store, R>(store: &mut S, f: impl FnOnce(&mut S::Txn<'_>) -> R) -> R {
    let mut txn = store.begin().expect("begin");
    f(&mut txn)
}

/// Runs `f` on a read-only transaction.
pub(crate) fn read<S: Store, R>(store: &mut S, f: impl FnOnce(&S::Txn<'_>) -> R) -> R {
    let txn = store.begin().expect("begin");
    f(&txn)
}
