//! Conformance suites and simulator for syncplan (being built: see issue 3).
