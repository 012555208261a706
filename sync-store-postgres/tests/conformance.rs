//! The shared store suite of sync-conformance (the store contract and the
//! engine cases) on PostgreSQL, one schema per case.

mod common;

use common::fresh;

sync_conformance::store_suite!(postgres, fresh);
