//! Flavor extra-spec validation (Nova microversion 2.86): a key Nova knows must carry a
//! valid value; an unknown key in a namespace Nova knows (`hw:`, `trait:`, ...) is refused;
//! keys in other namespaces (or none) pass. Mirrors nova `validators.validate`: exact name
//! first, then the parameterized names (`hw:numa_cpus.{id}`), then the namespace check.

mod registry;

use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Str,
    Bool,
}

pub(crate) struct Spec {
    name: &'static str,
    /// The name as a pattern, for parameterized names.
    name_regex: Option<&'static str>,
    kind: Kind,
    choices: &'static [&'static str],
    pattern: Option<&'static str>,
    min: Option<i64>,
    max: Option<i64>,
}

pub(crate) const fn spec(
    name: &'static str,
    name_regex: Option<&'static str>,
    kind: Kind,
    choices: &'static [&'static str],
    pattern: Option<&'static str>,
    min: Option<i64>,
    max: Option<i64>,
) -> Spec {
    Spec {
        name,
        name_regex,
        kind,
        choices,
        pattern,
        min,
        max,
    }
}

struct Compiled {
    exact: HashMap<&'static str, &'static Spec>,
    patterned: Vec<(Regex, &'static Spec)>,
    values: HashMap<&'static str, Regex>,
    namespaces: Vec<Regex>,
}

fn full(re: &str) -> Regex {
    // Patterns come from the registry and are tested to compile (see the tests below).
    Regex::new(&format!("^(?:{re})$"))
        .unwrap_or_else(|e| panic!("extra spec registry pattern {re}: {e}"))
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| Compiled {
        exact: registry::SPECS
            .iter()
            .filter(|s| s.name_regex.is_none())
            .map(|s| (s.name, s))
            .collect(),
        patterned: registry::SPECS
            .iter()
            .filter_map(|s| s.name_regex.map(|r| (full(r), s)))
            .collect(),
        values: registry::SPECS
            .iter()
            .filter_map(|s| s.pattern.map(|p| (s.name, full(p))))
            .collect(),
        namespaces: registry::NAMESPACES.iter().map(|n| full(n)).collect(),
    })
}

/// oslo `bool_from_string(strict=True)`.
fn boolean_like(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "on" | "y" | "yes" | "0" | "f" | "false" | "off" | "n" | "no"
    )
}

fn check(spec: &Spec, value: &str) -> Result<(), String> {
    match spec.kind {
        Kind::Int => {
            let n: i64 = value.trim().parse().map_err(|_| {
                format!("Validation failed; '{value}' is not a valid integer value.")
            })?;
            if let Some(max) = spec.max
                && max < n
            {
                return Err(format!(
                    "Validation failed; '{value}' is greater than the max value of '{max}'."
                ));
            }
            if let Some(min) = spec.min
                && min > n
            {
                return Err(format!(
                    "Validation failed; '{value}' is less than the min value of '{min}'."
                ));
            }
            Ok(())
        }
        Kind::Bool => {
            if boolean_like(value) {
                Ok(())
            } else {
                Err(format!(
                    "Validation failed; '{value}' is not a valid boolean-like value."
                ))
            }
        }
        Kind::Str => {
            if let Some(p) = spec.pattern {
                let re = compiled()
                    .values
                    .get(spec.name)
                    .ok_or_else(|| "pattern missing".to_owned())?;
                if !re.is_match(value) {
                    return Err(format!(
                        "Validation failed; '{value}' is not of the format '{p}'."
                    ));
                }
            } else if !spec.choices.is_empty() && !spec.choices.contains(&value) {
                return Err(format!(
                    "Validation failed; '{value}' is not one of: {}.",
                    spec.choices.join(", ")
                ));
            }
            Ok(())
        }
    }
}

/// Validate one extra spec as Nova does from 2.86. The error is Nova's message.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let c = compiled();
    if let Some(spec) = c.exact.get(name) {
        return check(spec, value);
    }
    if let Some((_, spec)) = c.patterned.iter().find(|(re, _)| re.is_match(name)) {
        return check(spec, value);
    }
    let Some((namespace, _)) = name.split_once(':') else {
        return Ok(());
    };
    if c.namespaces.iter().any(|ns| ns.is_match(namespace)) {
        return Err(format!(
            "Validation failed; extra spec '{name}' does not appear to be a valid extra spec."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_pattern_compiles() {
        let c = compiled();
        // Nova registers `capabilities:vcpus_used` twice; its registry (a dict) keeps one.
        let unique: std::collections::HashSet<&str> =
            registry::SPECS.iter().map(|s| s.name).collect();
        assert_eq!(c.exact.len() + c.patterned.len(), unique.len());
        assert!(unique.len() > 500);
    }

    #[test]
    fn nova_semantics_table() {
        let ok = [
            ("hw:cpu_policy", "dedicated"),
            ("hw:cpu_realtime", "yes"),
            ("hw:numa_nodes", "2"),
            ("hw:numa_cpus.0", "0-3"),
            ("trait:HW_CPU_X86_AVX2", "required"),
            ("trait1:CUSTOM_GOLD", "forbidden"),
            ("resources:VCPU", "2"),
            ("resources_g1:CUSTOM_FPGA", "1"),
            ("quota:disk_read_bytes_sec", "10240"),
            ("unknown_namespace:anything", "goes"),
            ("no_namespace_at_all", "fine"),
        ];
        for (k, v) in ok {
            assert_eq!(validate(k, v), Ok(()), "{k}={v}");
        }
        let bad = [
            ("hw:cpu_policy", "fast", "is not one of"),
            ("hw:cpu_realtime", "maybe", "boolean-like"),
            ("hw:numa_nodes", "two", "integer"),
            ("hw:numa_nodes", "0", "less than the min"),
            (
                "hw:no_such_thing",
                "1",
                "does not appear to be a valid extra spec",
            ),
            ("trait:HW_CPU_X86_AVX2", "wanted", "is not one of"),
            ("trait:NOT_A_REAL_TRAIT", "required", "does not appear"),
        ];
        for (k, v, msg) in bad {
            let e = validate(k, v).unwrap_err();
            assert!(e.contains(msg), "{k}={v}: {e}");
        }
    }
}
