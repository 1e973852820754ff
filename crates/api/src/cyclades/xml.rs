//! XML renderings of Cyclades responses (seed 001 shows XML for servers, stats and flavors).
//! Every handler builds JSON; [`to_xml`] turns it into XML by the rules the seed's examples
//! and Synnefo's templates follow:
//!
//! - the single top-level key is the root element (`server`, `flavors`, ...), carrying the
//!   OpenStack compute namespace (`.../api/v1` for flavors as in the seed's flavor examples,
//!   `.../api/v1.1` otherwise) and the Atom namespace;
//! - scalar members become attributes (booleans `true`/`false`, `null` members are left
//!   out, names that are not plain XML names such as `SNF:disk_template` are left out, as the
//!   seed's flavor example leaves it out);
//! - a list becomes an element holding one child per item, named by the singular of the list
//!   (`servers` → `server`, `attachments` / `addresses` → `nic`, `diagnostics` →
//!   `diagnostic`); a string item becomes `<nic id="..."/>`-style `id` attribute;
//! - `metadata` becomes `<metadata><meta key="k">v</meta>...</metadata>`;
//! - a bare top-level list (diagnostics) gets the root `diagnostics`;
//! - faults keep `code` as an attribute and `message` / `details` as child elements.

use serde_json::{Map, Value};

const NS_V1: &str = "http://docs.openstack.org/compute/api/v1";
const NS_V11: &str = "http://docs.openstack.org/compute/api/v1.1";
const NS_ATOM: &str = "http://www.w3.org/2005/Atom";

/// Render a JSON response body as XML. `fault` says the body is a fault.
pub fn to_xml(v: &Value, fault: bool) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let (root, body) = match v {
        Value::Object(m) if m.len() == 1 => {
            let (k, v) = m
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .unwrap_or(("", v));
            (k.to_owned(), v.clone())
        }
        Value::Array(_) => ("diagnostics".to_owned(), v.clone()),
        other => ("response".to_owned(), other.clone()),
    };
    let ns = if root.starts_with("flavor") {
        NS_V1
    } else {
        NS_V11
    };
    let ns_attrs = format!(" xmlns=\"{ns}\" xmlns:atom=\"{NS_ATOM}\"");
    if fault && let Value::Object(m) = &body {
        out.push_str(&format!("<{root}{ns_attrs}"));
        if let Some(code) = m.get("code") {
            out.push_str(&format!(" code=\"{}\"", escape(&scalar(code))));
        }
        out.push('>');
        for key in ["message", "details"] {
            if let Some(v) = m.get(key) {
                out.push_str(&format!("<{key}>{}</{key}>", escape(&scalar(v))));
            }
        }
        out.push_str(&format!("</{root}>\n"));
        return out;
    }
    element(&mut out, &root, &body, &ns_attrs);
    out.push('\n');
    out
}

fn singular(name: &str) -> String {
    match name {
        "attachments" | "addresses" => "nic".into(),
        "diagnostics" => "diagnostic".into(),
        n => n.strip_suffix('s').unwrap_or(n).to_owned(),
    }
}

/// Whether `n` can be an attribute or element name without a namespace prefix.
fn plain_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Escape text for content or a double-quoted attribute; characters XML 1.0 cannot carry
/// at all are dropped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

fn element(out: &mut String, name: &str, v: &Value, extra: &str) {
    match v {
        Value::Object(m) if name == "metadata" => metadata(out, m, extra),
        Value::Object(m) => {
            out.push_str(&format!("<{name}{extra}"));
            for (k, val) in m {
                if matches!(val, Value::Object(_) | Value::Array(_) | Value::Null) || !plain_name(k)
                {
                    continue;
                }
                out.push_str(&format!(" {k}=\"{}\"", escape(&scalar(val))));
            }
            let children: Vec<(&String, &Value)> = m
                .iter()
                .filter(|(k, v)| plain_name(k) && matches!(v, Value::Object(_) | Value::Array(_)))
                .collect();
            if children.is_empty() {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (k, val) in children {
                element(out, k, val, "");
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str(&format!("<{name}{extra}/>"));
                return;
            }
            out.push_str(&format!("<{name}{extra}>"));
            let item_name = singular(name);
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => element(out, &item_name, item, ""),
                    other => {
                        out.push_str(&format!("<{item_name} id=\"{}\"/>", escape(&scalar(other))))
                    }
                }
            }
            out.push_str(&format!("</{name}>"));
        }
        other => out.push_str(&format!(
            "<{name}{extra}>{}</{name}>",
            escape(&scalar(other))
        )),
    }
}

fn metadata(out: &mut String, m: &Map<String, Value>, extra: &str) {
    if m.is_empty() {
        out.push_str(&format!("<metadata{extra}/>"));
        return;
    }
    out.push_str(&format!("<metadata{extra}>"));
    for (k, v) in m {
        out.push_str(&format!(
            "<meta key=\"{}\">{}</meta>",
            escape(k),
            escape(&scalar(v))
        ));
    }
    out.push_str("</metadata>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_shapes() {
        let x = to_xml(
            &json!({"flavors": [{"id": 1, "name": "One core"}, {"id": 3, "name": "Four core"}]}),
            false,
        );
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<flavors xmlns=\"http://docs.openstack.org/compute/api/v1\""), "{x}");
        assert!(x.contains("<flavor id=\"1\" name=\"One core\"/><flavor id=\"3\" name=\"Four core\"/></flavors>"), "{x}");
        let x = to_xml(
            &json!({"flavor": {"id": 1, "name": "One core", "ram": 1024, "SNF:disk_template": "drbd", "disk": 20, "cpu": 1}}),
            false,
        );
        assert!(x.contains("<flavor xmlns"), "{x}");
        assert!(x.contains(" ram=\"1024\"") && !x.contains("drbd"), "{x}");
        let x = to_xml(
            &json!({"server": {"id": 1, "status": "BUILD", "suspended": false, "hostId": "",
                "metadata": {"OS": "a<b"}, "attachments": [{"id": "nic-1-0", "ipv6": null}]}}),
            false,
        );
        assert!(x.contains("<server xmlns=\"http://docs.openstack.org/compute/api/v1.1\" xmlns:atom=\"http://www.w3.org/2005/Atom\""), "{x}");
        assert!(
            x.contains(" suspended=\"false\"") && x.contains(" hostId=\"\""),
            "{x}"
        );
        assert!(
            x.contains("<metadata><meta key=\"OS\">a&lt;b</meta></metadata>"),
            "{x}"
        );
        assert!(
            x.contains("<attachments><nic id=\"nic-1-0\"/></attachments>"),
            "{x}"
        );
        let x = to_xml(
            &json!({"network": {"id": "2", "attachments": ["nic-4-0"]}}),
            false,
        );
        assert!(
            x.contains("<attachments><nic id=\"nic-4-0\"/></attachments>"),
            "{x}"
        );
        let x = to_xml(&json!([{"level": "DEBUG", "details": null}]), false);
        assert!(
            x.contains("<diagnostics xmlns") && x.contains("<diagnostic level=\"DEBUG\"/>"),
            "{x}"
        );
        let x = to_xml(
            &json!({"itemNotFound": {"code": 404, "message": "gone & lost", "details": ""}}),
            true,
        );
        assert!(x.contains("<itemNotFound xmlns=\"http://docs.openstack.org/compute/api/v1.1\" xmlns:atom=\"http://www.w3.org/2005/Atom\" code=\"404\"><message>gone &amp; lost</message><details></details></itemNotFound>"), "{x}");
        assert_eq!(escape("a\u{1}b\"\n"), "ab&quot;&#10;");
    }
}
