//! Lightning's profiler tables: rows of tab-separated, left-aligned cells between dashed
//! lines, as its `SimpleProfiler.summary()` prints them.

/// Python's `f"{x:.5}"`: five significant digits, scientific below 1e-4 and from 1e5,
/// trailing zeros dropped but one digit kept after the point.
pub(super) fn sig5(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x == 0.0 { "0.0".into() } else { x.to_string() };
    }
    let exp = x.abs().log10().floor() as i32;
    // rounding can carry into the next power of ten (99999.5 → 1.0e+05)
    let rounded: f64 = format!("{x:.4e}").parse().unwrap_or(x);
    let exp = if rounded.abs() >= 10f64.powi(exp + 1) { exp + 1 } else { exp };
    if !(-4..5).contains(&exp) {
        let s = format!("{x:.4e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = trim(mantissa);
        let e: i32 = e.parse().unwrap_or(0);
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", e.abs());
    }
    let decimals = (4 - exp).max(0) as usize;
    let s = trim(&format!("{x:.decimals$}"));
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// Drops trailing zeros after a decimal point (and the point itself).
fn trim(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A table: `title`, then the header and rows, each cell padded to `widths` and followed
/// by a tab (the first to the longest action name), framed by dashed lines as long as the
/// header with its tabs expanded.
pub(super) fn table(title: &str, header: &[&str], first: Vec<String>, rows: Vec<Vec<String>>) -> String {
    let key = rows.iter().chain(std::iter::once(&first)).map(|r| r[0].chars().count()).max().unwrap_or(0);
    let key = key.max(header[0].len());
    let line = |cells: &[String]| {
        let mut row = format!("|  {:<key$}\t|", cells[0]);
        for c in &cells[1..] {
            row.push_str(&format!("  {c:<15}\t|"));
        }
        row
    };
    let head = line(&header.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let dashes = "-".repeat(expanded_len(&head) + 1);
    let mut out = vec![format!("{title}"), dashes.clone(), head, dashes.clone(), line(&first), dashes.clone()];
    out.extend(rows.iter().map(|r| line(r)));
    out.push(dashes);
    out.join("\n") + "\n"
}

/// The width of a line with its tabs expanded to multiples of 8 (Python's `expandtabs`).
fn expanded_len(s: &str) -> usize {
    s.chars().fold(0, |col, c| if c == '\t' { (col / 8 + 1) * 8 } else { col + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_significant_digits_as_python() {
        // print(f"{x:.5}") in Python 3.11
        for (x, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.123456789, "0.12346"),
            (12.3456789, "12.346"),
            (2.0, "2.0"),
            (0.00012345678, "0.00012346"),
            (0.000012345678, "1.2346e-05"),
            (123456.0, "1.2346e+05"),
            (99999.9, "1e+05"),
            (0.0, "0.0"),
            (100.0, "100.0"),
        ] {
            assert_eq!(sig5(x), want, "{x}");
        }
    }

    #[test]
    fn the_table_is_framed_by_lines_as_long_as_the_expanded_header() {
        let t = table(
            "FIT Profiler Report",
            &["Action", "Mean duration (s)"],
            vec!["Total".into(), "-".into()],
            vec![vec!["training_step".into(), "0.1".into()]],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "FIT Profiler Report");
        assert_eq!(lines[2], "|  Action       \t|  Mean duration (s)\t|");
        assert_eq!(lines[1].len(), expanded_len(lines[2]) + 1);
        assert_eq!(lines[6], "|  training_step\t|  0.1            \t|");
    }
}
