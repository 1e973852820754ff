//! The one integration-test binary: every test starts a full Nimbus (store, control,
//! in-process fake agent, HTTP API) on port 0 with its own database and talks HTTP to it.

mod admin;
mod agents;
mod alliance;
mod common;
mod cross_dialect;
mod cyclades;
mod dialect_shape;
mod identity;
mod images;
mod keypairs;
mod mogan;
mod qemu;
mod quotas;
mod server_groups;
mod servers;
mod vpe;
