//! The Nimbus domain: typed ids, resources, Nova's three state axes, the rules that decide
//! which action is allowed when, the transport-agnostic [`Error`], and the wire types the
//! controller and a compute agent exchange.
//!
//! Everything here is plain data and pure functions: no I/O, no runtime, no HTTP. Every API
//! dialect is a view over these types.

pub mod agent;
pub mod error;
pub mod flavor;
pub mod host;
pub mod identity;
pub mod ids;
pub mod image;
pub mod keypair;
pub mod network;
pub mod operation;
pub mod quota;
pub mod server;
pub mod server_group;
pub mod state;
pub mod stats;
pub mod time;
pub mod volume;

pub use error::{Error, Result};
pub use ids::*;
