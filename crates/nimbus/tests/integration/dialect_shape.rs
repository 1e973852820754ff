//! Golden-fixture shape checks for the seed dialects: a fixture under
//! `tests/fixtures/<dialect>/` is a transcription of a seed example; an answer matches it
//! when it has the same keys with the same JSON types, and strings that are ids,
//! timestamps, URLs, MACs or IPs in the example are of the same kind in the answer.

use serde_json::Value;

/// Load `tests/fixtures/<dialect>/<name>` (repository root).
pub fn fixture(dialect: &str, name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(dialect)
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Exceptions to exact matching, each a documented deviation or a data-keyed object.
/// Paths are dotted from the root; `[]` stands for any array item, `*` for any value of a
/// data-keyed object (e.g. `instances[].network_info.*.fixed_ips[].subnet_id`).
#[derive(Default)]
pub struct Rules<'a> {
    /// May be null in the answer (the field is nullable; the example shows a value).
    pub nullable: &'a [&'a str],
    /// Objects keyed by data (port ids, network names, free-form metadata): keys are not
    /// compared; every value must match the example's first value.
    pub maps: &'a [&'a str],
    /// Only the JSON type is compared (e.g. Nimbus flavor ids are not UUIDs).
    pub loose: &'a [&'a str],
    /// `(object path, key)` pairs Nimbus adds on purpose.
    pub extra_keys: &'a [(&'a str, &'a str)],
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Uuid,
    Hex32,
    /// ISO 8601 with `+00:00`.
    TimeOffset,
    /// ISO 8601 with `Z`.
    TimeZ,
    Url,
    Mac,
    Ip,
    Text,
}

fn kind(s: &str) -> Kind {
    let hex = |c: char| c.is_ascii_hexdigit();
    let b = s.as_bytes();
    if s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                hex(c)
            }
        })
    {
        return Kind::Uuid;
    }
    if s.len() == 32 && s.chars().all(hex) {
        return Kind::Hex32;
    }
    let date_like = s.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && s[..4].chars().all(|c| c.is_ascii_digit());
    if date_like && s.ends_with("+00:00") {
        return Kind::TimeOffset;
    }
    if date_like && s.ends_with('Z') {
        return Kind::TimeZ;
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        return Kind::Url;
    }
    if s.len() == 17
        && s.split(':').count() == 6
        && s.split(':').all(|p| p.len() == 2 && p.chars().all(hex))
    {
        return Kind::Mac;
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Kind::Ip;
    }
    Kind::Text
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Panic with the path of the first difference.
pub fn assert_shape(expected: &Value, actual: &Value, rules: &Rules<'_>) {
    let mut errors = Vec::new();
    walk(expected, actual, "", rules, &mut errors);
    assert!(
        errors.is_empty(),
        "answer does not match the fixture:\n  {}\nanswer: {actual:#}",
        errors.join("\n  ")
    );
}

fn walk(e: &Value, a: &Value, path: &str, rules: &Rules<'_>, errors: &mut Vec<String>) {
    if a.is_null() && (e.is_null() || rules.nullable.contains(&path)) {
        return;
    }
    if e.is_null() {
        // The example shows null: the field is nullable; any scalar value will do.
        if a.is_object() || a.is_array() {
            errors.push(format!(
                "{path}: example is null, answer is {}",
                type_name(a)
            ));
        }
        return;
    }
    if type_name(e) != type_name(a) {
        errors.push(format!(
            "{path}: expected {}, got {} ({a})",
            type_name(e),
            type_name(a)
        ));
        return;
    }
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) if rules.maps.contains(&path) => {
            if let Some(first) = eo.values().next() {
                for v in ao.values() {
                    walk(first, v, &join(path, "*"), rules, errors);
                }
            }
        }
        (Value::Object(eo), Value::Object(ao)) => {
            for k in eo.keys() {
                if !ao.contains_key(k) {
                    errors.push(format!("{path}: missing key '{k}'"));
                }
            }
            for k in ao.keys() {
                if !eo.contains_key(k) && !rules.extra_keys.contains(&(path, k.as_str())) {
                    errors.push(format!("{path}: unexpected key '{k}'"));
                }
            }
            for (k, ev) in eo {
                if let Some(av) = ao.get(k) {
                    walk(ev, av, &join(path, k), rules, errors);
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            if let Some(first) = ea.first() {
                for v in aa {
                    walk(first, v, &format!("{path}[]"), rules, errors);
                }
            }
        }
        (Value::String(es), Value::String(as_)) if !rules.loose.contains(&path) => {
            let (ek, ak) = (kind(es), kind(as_));
            if ek != ak {
                errors.push(format!(
                    "{path}: '{as_}' is {ak:?}, the example '{es}' is {ek:?}"
                ));
            }
        }
        _ => {}
    }
}

#[test]
fn kinds() {
    assert_eq!(kind("7de2859d-ec6d-42c7-bb86-9d630ba5ac94"), Kind::Uuid);
    assert_eq!(kind("2f15c3524826465a9afbd150478b3b76"), Kind::Hex32);
    assert_eq!(kind("2016-09-27T02:37:21.966342+00:00"), Kind::TimeOffset);
    assert_eq!(kind("2016-10-17T04:12:41+00:00"), Kind::TimeOffset);
    assert_eq!(kind("2015-08-10T19:59:49Z"), Kind::TimeZ);
    assert_eq!(kind("http://x/v1"), Kind::Url);
    assert_eq!(kind("fa:16:3e:1c:bb:cf"), Kind::Mac);
    assert_eq!(kind("2001:db8::a"), Kind::Ip);
    assert_eq!(kind("ACTIVE"), Kind::Text);
}
