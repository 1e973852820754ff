//! Timestamps: UTC, microsecond precision (what every backend stores losslessly).

use chrono::{DateTime, SubsecRound, Utc};

pub type Timestamp = DateTime<Utc>;

/// The current time truncated to microseconds, so a value read back from the store equals
/// the value written.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}
