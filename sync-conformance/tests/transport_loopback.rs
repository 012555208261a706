//! The transport suite on [`LoopbackTransport`]: one `#[test]` per case.

use sync_conformance::loopback::LoopbackTransport;

sync_conformance::transport_suite!(loopback, LoopbackTransport::connect);
