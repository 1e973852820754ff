//! The one integration-test binary: every test starts a full Nimbus (store, control,
//! in-process fake agent, HTTP API) on port 0 with its own database and talks HTTP to it.

mod admin;
mod agents;
mod common;
mod identity;
mod images;
mod keypairs;
mod quotas;
mod server_groups;
mod servers;
