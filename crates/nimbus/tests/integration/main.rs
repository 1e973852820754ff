//! The one integration-test binary: every test starts a full Nimbus (store, control,
//! in-process fake agent, HTTP API) on port 0 with its own database and talks HTTP to it.

mod common;
mod cyclades;
mod identity;
mod servers;
