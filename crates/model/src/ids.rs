//! Typed identifiers. Inside the core an id is never a bare string: a `ServerId` cannot be
//! passed where a `FlavorId` is expected.
//!
//! UUID-keyed resources (servers, images, hosts, operations, server groups) parse strictly;
//! string-keyed ones (flavors, projects, users, roles) keep the operator's or Keystone's
//! spelling, because Nova flavor ids and Keystone ids are arbitrary strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Hyphenated lowercase, as Nova and Glance print UUIDs.
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

uuid_id!(
    /// A server (instance).
    ServerId
);
uuid_id!(
    /// An image in the registry.
    ImageId
);
uuid_id!(
    /// A compute host (one agent).
    HostId
);
uuid_id!(
    /// A persisted long-running operation (Nova's instance action).
    OperationId
);
uuid_id!(
    /// A server group.
    ServerGroupId
);
uuid_id!(
    /// A network.
    NetworkId
);
uuid_id!(
    /// A network interface (NIC).
    NicId
);
uuid_id!(
    /// A storage pool.
    PoolId
);
uuid_id!(
    /// A data volume.
    VolumeId
);

string_id!(
    /// A flavor id: Nova accepts any string ("1", "m1.tiny", a UUID).
    FlavorId
);
string_id!(
    /// A Keystone project id (32 lowercase hex digits when generated here).
    ProjectId
);
string_id!(
    /// A Keystone user id.
    UserId
);
string_id!(
    /// A Keystone role id.
    RoleId
);
string_id!(
    /// A Keystone domain id ("default" for the default domain).
    DomainId
);

/// Keystone-style id: a UUID4 without hyphens.
pub fn keystone_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A request id in Nova's `req-<uuid>` form, also the key of an instance action.
pub fn request_id() -> String {
    format!("req-{}", Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_and_reject_garbage() {
        let id = ServerId::new();
        let parsed: ServerId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert!("not-a-uuid".parse::<ServerId>().is_err());
        assert_eq!(id.to_string().len(), 36);
    }

    #[test]
    fn keystone_ids_are_32_hex() {
        let id = keystone_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(request_id().starts_with("req-"));
    }
}
