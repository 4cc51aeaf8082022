//! The model summary Lightning prints at fit start, from the struct's fields and the
//! `VarMap`'s name prefixes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use candle_core::Var;

use crate::HasParameters;

/// A layer's variables (name suffix → shape), its parameter count and how many are trainable.
type Layer = (BTreeMap<String, Vec<usize>>, usize, usize);

/// Lightning's `get_human_readable_count`: `320`, `18.5 K`, `1.2 M`.
fn human(n: usize) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.1} B", n as f64 / 1e9),
    }
}

/// A layer's type from its variables' shapes, when no field names it.
fn infer_type(vars: &BTreeMap<String, Vec<usize>>) -> String {
    let w = vars.get("weight").map(Vec::as_slice);
    match w {
        Some([o, i]) => format!("Linear({i}→{o})"),
        Some([o, i, k]) => format!("Conv1d({i}→{o}, {k})"),
        Some([o, i, kh, kw]) => format!("Conv2d({i}→{o}, {kh}×{kw})"),
        Some([n]) => format!("Norm({n})"),
        _ if vars.contains_key("embeddings") => "Embedding".into(),
        _ if vars.contains_key("attn.c_attn.weight") && vars.contains_key("mlp.c_fc.weight") => {
            "TransformerBlock".into()
        }
        _ if vars.contains_key("c_attn.weight") => "MultiHeadAttention".into(),
        _ => infer_composite(vars),
    }
}

/// A layer made of sub-layers: `4 × TransformerBlock` for a list (`0.…`, `1.…`, as a
/// `Vec` of layers names its variables), else the sub-layers' names, as `(fc1, fc2)`.
fn infer_composite(vars: &BTreeMap<String, Vec<usize>>) -> String {
    let mut children: BTreeMap<&str, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for (name, shape) in vars {
        let (child, rest) = name.split_once('.').unwrap_or((name.as_str(), ""));
        children.entry(child).or_default().insert(rest.to_owned(), shape.clone());
    }
    // variables of this layer itself (not of sub-layers): nothing to name it by
    if children.is_empty() || children.values().any(|c| c.contains_key("")) {
        return "-".into();
    }
    if children.keys().all(|c| c.bytes().all(|b| b.is_ascii_digit())) {
        let first = children.values().next().map(infer_type).unwrap_or_default();
        return format!("{} × {first}", children.len());
    }
    let names: Vec<&str> = children.keys().copied().collect();
    match names.len() {
        0..=3 => format!("({})", names.join(", ")),
        n => format!("({}, … {} more)", names[..2].join(", "), n - 2),
    }
}

/// The summary table of a module: one row per layer, the first component of the variable
/// names (`fc1` of `fc1.weight`), with its type (the struct field's of that name, else read
/// from the weight's shape), parameter count and trainability; then the totals and the size
/// in MB. The trainer prints it at fit start unless `enable_model_summary(false)`.
///
/// Every parameter counts as trainable here; [`summarize_trainable`] takes the optimizers'
/// parameters.
pub fn summarize<M: HasParameters>(model: &M) -> String {
    summarize_trainable(model, |_| true)
}

/// [`summarize`], with the parameters for which `trainable` is false (those no optimizer
/// holds, as the trainer tells it at fit start) counted as non-trainable, as Lightning counts
/// frozen ones. A layer's Trainable column says `yes`, `no` or `partly`.
///
/// ```
/// use candle_nn::VarMap;
/// # use lightning::prelude::*;
/// # #[lightning_module] struct Two { vars: VarMap, a: candle_nn::Linear, b: candle_nn::Linear }
/// # fn main() -> lightning::Result<()> {
/// let vars = VarMap::new();
/// let vb = lightning::seeded_var_builder(&vars, 0, candle_core::DType::F32, &candle_core::Device::Cpu);
/// let (a, b) = (candle_nn::linear(2, 2, vb.pp("a"))?, candle_nn::linear(2, 2, vb.pp("b"))?);
/// let frozen = a.weight().id();
/// let table = lightning::summarize_trainable(&Two { vars, a, b }, |v| v.id() != frozen);
/// assert!(table.contains("8         Trainable params") && table.contains("4         Non-trainable params"));
/// # Ok(()) }
/// ```
pub fn summarize_trainable<M: HasParameters>(model: &M, trainable: impl Fn(&Var) -> bool) -> String {
    // layer → (variable suffix → shape), parameter count, trainable count; and bytes
    let mut layers: BTreeMap<String, Layer> = BTreeMap::new();
    let mut bytes = 0usize;
    {
        let data = model.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in data.iter() {
            let (layer, rest) = name.split_once('.').unwrap_or((name.as_str(), ""));
            let e = layers.entry(layer.to_owned()).or_default();
            e.0.insert(rest.to_owned(), var.dims().to_vec());
            e.1 += var.elem_count();
            if trainable(var) {
                e.2 += var.elem_count();
            }
            bytes += var.elem_count() * var.dtype().size_in_bytes();
        }
    }
    let fields = M::fields();
    // rows in field order first, then the other prefixes by name
    let mut names: Vec<&String> = layers.keys().collect();
    names.sort_by_key(|n| (fields.iter().position(|(f, _)| f == n).unwrap_or(usize::MAX), (*n).clone()));
    let rows: Vec<[String; 4]> = names
        .iter()
        .map(|n| {
            let (vars, count, trained) = &layers[*n];
            let ty =
                fields.iter().find(|(f, _)| f == n).map(|(_, t)| t.to_string()).unwrap_or_else(|| infer_type(vars));
            let yes = match trained {
                0 if *count > 0 => "no",
                t if t < count => "partly",
                _ => "yes",
            };
            [(*n).clone(), ty, human(*count), yes.into()]
        })
        .collect();
    let head = ["Name", "Type", "Params", "Trainable"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let idx_w = rows.len().saturating_sub(1).to_string().len();
    let line = |cells: [&str; 4], idx: &str| {
        let mut s = format!("{idx:<idx_w$} ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            let _ = write!(s, "| {c}{} ", " ".repeat(pad));
        }
        s.trim_end().to_owned()
    };
    let header = line(head, "");
    let rule = "-".repeat(header.chars().count());
    let mut out = format!("{header}\n{rule}\n");
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]], &i.to_string()));
        out.push('\n');
    }
    let total: usize = layers.values().map(|(_, c, _)| *c).sum();
    let trained: usize = layers.values().map(|(_, _, t)| *t).sum();
    let _ = write!(
        out,
        "{rule}\n{:<10}Trainable params\n{:<10}Non-trainable params\n{:<10}Total params\n{:<10.3}Total estimated model params size (MB)\n",
        human(trained),
        human(total - trained),
        human(total),
        bytes as f64 / 1e6
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(names: &[(&str, &[usize])]) -> BTreeMap<String, Vec<usize>> {
        names.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    }

    #[test]
    fn layer_types_are_read_from_the_variable_names() {
        let block = |i: usize| {
            [
                (format!("{i}.attn.c_attn.weight"), vec![24, 8]),
                (format!("{i}.mlp.c_fc.weight"), vec![32, 8]),
                (format!("{i}.ln_1.weight"), vec![8]),
            ]
        };
        let list: BTreeMap<String, Vec<usize>> = (0..4).flat_map(block).collect();
        assert_eq!(infer_type(&list), "4 × TransformerBlock");
        assert_eq!(infer_type(&vars(&[("0.weight", &[3, 2]), ("1.weight", &[3, 3])])), "2 × Linear(2→3)");
        assert_eq!(infer_type(&vars(&[("fc1.weight", &[3, 2]), ("fc2.bias", &[3])])), "(fc1, fc2)");
        let many = vars(&[("a.w", &[1]), ("b.w", &[1]), ("c.w", &[1]), ("d.w", &[1])]);
        assert_eq!(infer_type(&many), "(a, b, … 2 more)");
        assert_eq!(infer_type(&vars(&[("c_attn.weight", &[24, 8])])), "MultiHeadAttention");
        assert_eq!(infer_type(&vars(&[("scale", &[1])])), "-");
    }
}
