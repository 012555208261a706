//! SQLite store for syncplan (being built: see issue 4).
