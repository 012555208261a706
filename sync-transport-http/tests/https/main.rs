//! The HTTPS server and client on 127.0.0.1, through the public API:
//! syncing, every rejection, tokens; and the same handling on raw bytes
//! without sockets (`HubService`).

#[path = "../common/mod.rs"]
mod common;

mod rejections;
mod service;
mod sync;
mod tokens;
