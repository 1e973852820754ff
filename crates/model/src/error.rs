//! The one transport-agnostic error type. Each API dialect maps it to a status code and a
//! fault body in a single `match`; nothing below the API layer knows about HTTP.
//!
//! Invariant: the `String` carried by a variant is the message shown to the client. Internal
//! context (SQL errors, I/O errors, chains) goes only into [`Error::Internal`], whose text is
//! logged and never sent.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The named resource does not exist or is not visible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// A resource with that name or id already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is malformed or a value is invalid; the message names the field.
    #[error("{0}")]
    InvalidRequest(String),
    /// The resource is in a state that does not allow the request.
    #[error("{0}")]
    Conflict(String),
    /// A finite pool has no free member (a network's IPv4 addresses). A conflict in every
    /// dialect; its own kind because Cyclades names it `conflict`, unlike a state conflict.
    #[error("{0}")]
    Exhausted(String),
    /// The resource is in use and cannot be removed (Cyclades answers 421, OpenStack 409).
    #[error("{0}")]
    InUse(String),
    /// The request would exceed a quota.
    #[error("{0}")]
    OverQuota(String),
    /// The scheduler found no host for the request.
    #[error("{0}")]
    NoValidHost(String),
    /// No or bad credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Credentials are fine but the policy denies the call.
    #[error("{0}")]
    Forbidden(String),
    /// The request is understood but this deployment cannot serve it now.
    #[error("{0}")]
    Unavailable(String),
    /// The request is valid but the feature is not implemented by this deployment.
    #[error("{0}")]
    NotImplemented(String),
    /// The body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A bug or an infrastructure failure. The text is internal context: log it, never send it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn internal(context: impl std::fmt::Display) -> Self {
        Error::Internal(context.to_string())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidRequest(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    /// Nova's wording for a missing server.
    pub fn server_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("Instance {id} could not be found."))
    }

    pub fn flavor_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("Flavor {id} could not be found."))
    }

    pub fn image_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("Image {id} could not be found."))
    }

    /// The same kind with its client message rewritten (internal context is left alone).
    /// Dialects use it to name resources the way their clients know them.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        use Error::*;
        match self {
            NotFound(m) => NotFound(f(m)),
            AlreadyExists(m) => AlreadyExists(f(m)),
            InvalidRequest(m) => InvalidRequest(f(m)),
            Conflict(m) => Conflict(f(m)),
            Exhausted(m) => Exhausted(f(m)),
            InUse(m) => InUse(f(m)),
            OverQuota(m) => OverQuota(f(m)),
            NoValidHost(m) => NoValidHost(f(m)),
            Unauthenticated(m) => Unauthenticated(f(m)),
            Forbidden(m) => Forbidden(f(m)),
            Unavailable(m) => Unavailable(f(m)),
            NotImplemented(m) => NotImplemented(f(m)),
            PayloadTooLarge(m) => PayloadTooLarge(f(m)),
            Internal(m) => Internal(m),
        }
    }

    /// The message that may be shown to a client. Internal errors get a generic text.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "Unexpected API Error. Please report this at \
                the Nimbus issue tracker and attach the Nimbus API log if possible."
                .to_owned(),
            other => other.to_string(),
        }
    }
}
