//! `metrics.png`: `metrics.svg` rendered in pure Rust (`resvg`), with a font built into the
//! binary (a 72 KB cut of DejaVu Sans, `assets/`), so no font or image library of the machine
//! is needed and the picture is the same everywhere.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use crate::{Error, Result};

/// DejaVu Sans cut down to Latin, Greek and punctuation; licence in `assets/DejaVuSans-LICENSE.txt`.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");

/// The fonts the SVG's text is drawn with: the built-in one under every generic family,
/// parsed once per process.
fn fonts() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_source(usvg::fontdb::Source::Binary(Arc::new(FONT)));
        db.set_sans_serif_family("DejaVu Sans");
        db.set_serif_family("DejaVu Sans");
        db.set_monospace_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

/// The PNG of an SVG document, at the SVG's own size, on the background the SVG draws.
pub(crate) fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    let opt = usvg::Options { fontdb: fonts(), font_family: "DejaVu Sans".into(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| png_err(format!("reading the SVG: {e}")))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| png_err(format!("no picture of {}x{} pixels", size.width(), size.height())))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| png_err(format!("encoding: {e}")))
}

fn png_err(what: String) -> Error {
    Error::msg(format!("drawing metrics.png: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes an RGBA PNG written by `svg_to_png` (tiny-skia's own decoder).
    fn pixels(png: &[u8]) -> tiny_skia::Pixmap {
        tiny_skia::Pixmap::decode_png(png).unwrap()
    }

    #[test]
    fn text_is_drawn_with_the_built_in_font() {
        let with_text = |t: &str| {
            let svg = format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="white"/><text x="4" y="28" font-family="sans-serif" font-size="24">{t}</text></svg>"#
            );
            let img = pixels(&svg_to_png(&svg).unwrap());
            assert_eq!((img.width(), img.height()), (120, 40));
            img.pixels().iter().filter(|p| p.red() < 128).count()
        };
        // no font would draw no text: the page would stay white
        assert_eq!(with_text(""), 0);
        assert!(with_text("loss") > 50, "{}", with_text("loss"));
    }

    #[test]
    fn a_bad_svg_is_an_error() {
        let err = svg_to_png("<svg").unwrap_err().to_string();
        assert!(err.contains("drawing metrics.png: reading the SVG"), "{err}");
    }
}
