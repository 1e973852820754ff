//! The service catalog every token carries, built from the public base URL.
//! Compute is versioned (`/compute/v2.1`); image is unversioned (clients discover it),
//! identity is `/identity` (clients append `/v3`).

use serde_json::{Value, json};

/// (type, name, path under the public URL)
const SERVICES: &[(&str, &str, &str)] = &[
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("image", "glance", "/image"),
    // Mogan's client appends `/v1` to the service root.
    ("baremetal_compute", "mogan", ""),
];

/// Stable ids so clients that cache the catalog see the same entries across restarts.
fn id(kind: &str, iface: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (kind, iface).hash(&mut h);
    format!("{:016x}{:016x}", h.finish(), h.finish().rotate_left(17))
}

pub fn catalog(public_url: &str, region: &str) -> Value {
    let entries: Vec<Value> = SERVICES
        .iter()
        .map(|(kind, name, path)| {
            let url = format!("{public_url}{path}");
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|iface| {
                    json!({
                        "id": id(kind, iface),
                        "interface": iface,
                        "region": region,
                        "region_id": region,
                        "url": url,
                    })
                })
                .collect();
            json!({"endpoints": endpoints, "id": id(kind, "service"), "type": kind, "name": name})
        })
        .collect();
    Value::Array(entries)
}
