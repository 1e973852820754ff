//! Figures with their targets, printed as they are measured and collected for `--json`.

use crate::procs;
use serde_json::{Map, Value, json};

/// A DESIGN §8 target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The figure must be below this.
    Below(f64),
    /// The figure must be at least this.
    AtLeast(f64),
}

impl Target {
    fn holds(self, v: f64) -> bool {
        match self {
            Target::Below(t) => v < t,
            Target::AtLeast(t) => v >= t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::Below(t) => format!("< {t} {unit}"),
            Target::AtLeast(t) => format!(">= {t} {unit}"),
        }
    }
}

/// Everything one invocation measured.
pub struct Report {
    scenarios: Map<String, Value>,
    current: Option<(String, Map<String, Value>)>,
    failed_targets: Vec<String>,
}

impl Report {
    pub fn new() -> Report {
        Report {
            scenarios: Map::new(),
            current: None,
            failed_targets: Vec::new(),
        }
    }

    /// Begin a scenario: prints its header with the machine's load.
    pub fn begin(&mut self, name: &str) {
        self.end();
        let load = procs::loadavg();
        println!(
            "\n== {name} (load average {:.2} {:.2} {:.2}) ==",
            load[0], load[1], load[2]
        );
        let mut m = Map::new();
        m.insert("load_before".into(), json!(load));
        m.insert("started".into(), json!(chrono::Utc::now().to_rfc3339()));
        m.insert("figures".into(), json!({}));
        self.current = Some((name.to_owned(), m));
    }

    /// Close the current scenario (also done by the next `begin` and by `finish`).
    pub fn end(&mut self) {
        if let Some((name, mut m)) = self.current.take() {
            m.insert("load_after".into(), json!(procs::loadavg()));
            self.scenarios.insert(name, Value::Object(m));
        }
    }

    /// Record a figure with an optional target; prints one line.
    pub fn figure(
        &mut self,
        key: &str,
        label: &str,
        value: f64,
        unit: &str,
        target: Option<Target>,
    ) {
        let verdict = target.map(|t| t.holds(value));
        let shown = if value.abs() >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        };
        match (target, verdict) {
            (Some(t), Some(ok)) => println!(
                "  {label:<52} {shown:>10} {unit:<6} target {:<14} {}",
                t.text(unit),
                if ok { "PASS" } else { "FAIL" }
            ),
            _ => println!("  {label:<52} {shown:>10} {unit}"),
        }
        if verdict == Some(false) {
            self.failed_targets.push(label.to_owned());
        }
        let entry = json!({
            "label": label, "value": value, "unit": unit,
            "target": target.map(|t| t.text(unit)),
            "pass": verdict,
        });
        if let Some((_, m)) = self.current.as_mut()
            && let Some(Value::Object(f)) = m.get_mut("figures")
        {
            f.insert(key.to_owned(), entry);
        }
    }

    /// Attach raw details (distributions, counts) to the current scenario.
    pub fn detail(&mut self, key: &str, value: Value) {
        if let Some((_, m)) = self.current.as_mut() {
            m.insert(key.to_owned(), value);
        }
    }

    /// Print a note line (not a figure).
    pub fn note(&self, text: &str) {
        println!("  - {text}");
    }

    /// Close and return the whole report as JSON.
    pub fn finish(mut self, meta: Value) -> (Value, Vec<String>) {
        self.end();
        (
            json!({"meta": meta, "scenarios": Value::Object(self.scenarios)}),
            self.failed_targets,
        )
    }
}
