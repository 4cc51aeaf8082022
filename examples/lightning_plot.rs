//! `lightning-plot`: redraws `metrics.svg` and `metrics.png` from a run directory's
//! `metrics.csv`, ours or one written by Python Lightning's `CSVLogger`.
//!
//! ```text
//! cargo run --example lightning_plot -- target/mnist-example/lightning_logs/version_0
//! ```

fn main() {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: lightning_plot <version dir with metrics.csv>...");
        std::process::exit(2);
    }
    for dir in dirs {
        match lightning::logging::plot_metrics(&dir) {
            Ok(plot) => println!("wrote {} and {}", plot.svg.display(), plot.png.display()),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}
