//! Hyperparameters as MLflow params, as Lightning's `MLFlowLogger.log_hyperparams` sends them:
//! nested keys flattened with `/` (`_flatten_dict`), each value as Python's `str(v)`, cut
//! to 250 characters.

use serde_json::Value;

/// Lightning's cut of a param's value.
pub(crate) const MAX_VALUE: usize = 250;

/// `(key, str(value))` for every leaf of `params`; an empty mapping gives no param.
pub(crate) fn flatten(params: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk("", params, &mut out);
    out
}

fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                walk(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), repr(other))),
    }
}

/// Python's `repr` of a JSON value: `True`, `None`, `1e-05`, `[32, 64]`, `{'a': 'b'}`.
pub(crate) fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) if n.is_f64() => python_float(n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            let items: Vec<String> =
                m.iter().map(|(k, v)| format!("{}: {}", repr(&Value::String(k.clone())), repr(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `repr(float)`: the shortest digits, positional for exponents -4 to 15, else
/// `d.ddde±XX`.
pub(crate) fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` writes an integer exponent");
    if (-4..16).contains(&exp) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_read_as_python_prints_them() {
        for (v, py) in [
            (1e-5, "1e-05"),
            (0.001, "0.001"),
            (3.0, "3.0"),
            (1.5e16, "1.5e+16"),
            (-0.0001, "-0.0001"),
            (123.25, "123.25"),
        ] {
            assert_eq!(python_float(v), py);
        }
    }

    #[test]
    fn nested_hparams_flatten_with_slashes() {
        let p =
            json!({"lr": 0.001, "opt": {"name": "adam", "betas": [0.9, 0.999]}, "bn": true, "none": null, "empty": {}});
        let flat = flatten(&p);
        assert_eq!(
            flat,
            [("bn", "True"), ("lr", "0.001"), ("none", "None"), ("opt/betas", "[0.9, 0.999]"), ("opt/name", "adam")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
