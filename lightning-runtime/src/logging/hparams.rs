//! Hyperparameters as YAML, for `hparams.yaml`.
//!
//! Written here rather than with a YAML crate: the maintained serde YAML crates are forks of an
//! archived one, and the output needed is the block subset of YAML for a JSON tree (strings
//! that could be read back as another type are quoted, in JSON's syntax, which YAML accepts).

use serde_json::Value;

/// Block-style YAML for a JSON value, as Lightning's `save_hparams_to_yaml` writes it.
///
/// ```
/// let v = lightning::serde_json::json!({"lr": 0.001, "model": "cnn", "layers": [32, 64]});
/// assert_eq!(lightning::logging::to_yaml(&v), "layers:\n- 32\n- 64\nlr: 0.001\nmodel: cnn\n");
/// ```
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if m.is_empty() => out.push_str("{}\n"),
        Value::Object(_) | Value::Array(_) => block(v, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push_str(&format!("{pad}{}:", string(k)));
                nested(v, indent + 2, true, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                out.push_str(&format!("{pad}-"));
                nested(v, indent + 2, false, out);
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn nested(v: &Value, indent: usize, under_key: bool, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(v, indent, out);
        }
        // a list under a key sits at the key's own indentation, as PyYAML writes it
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(v, if under_key { indent - 2 } else { indent }, out);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        other => out.push_str(&format!(" {}\n", scalar(other))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        other => other.to_string(),
    }
}

/// Plain when YAML would read it back as the same string, else double-quoted.
fn string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || "_-./".contains(c))
        && !s.starts_with(['-', '.'])
        && s.parse::<f64>().is_err()
        && !matches!(s.to_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~");
    if plain {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}
