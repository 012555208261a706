//! The HTTPS server and client on 127.0.0.1, through the public API:
//! syncing, every rejection, tokens.

#[path = "../common/mod.rs"]
mod common;

mod rejections;
mod sync;
mod tokens;
