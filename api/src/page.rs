//! The status page: one HTML document rendered once per process from its files in `page/` and
//! the vendored libraries, everything inline, so the page is a single answer with no build step
//! and no asset routes (the same in the Lambda, behind CloudFront and in the runner).
//!
//! - `page/index.html`: the markup; `<!--@style-->` and `<!--@script-->` mark where the styles
//!   and scripts go.
//! - `page/status.css`, `page/status.js`: the page's own style and code (plain JavaScript, no
//!   framework): polling while visible, charts, paging, the in-browser proof check, and the
//!   rewards per slot of the newest day with rewards (`latestRewardsDay` in the summary; the
//!   day's answer from `/days/{day}/rewards`, earlier days by its pager), hidden until there is one.
//! - `page/vendor/`: uPlot (charts) and js-sha3 (keccak-256, which Web Crypto lacks), as their
//!   npm packages ship them, each with its licence, which the page carries in a comment above
//!   the library (`page/vendor/README.md`: versions, checksums, how to update).

use std::sync::LazyLock;

const TEMPLATE: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/status.css");
const SCRIPT: &str = include_str!("page/status.js");
const UPLOT_JS: &str = include_str!("page/vendor/uPlot-1.6.32.iife.min.js");
const UPLOT_CSS: &str = include_str!("page/vendor/uPlot-1.6.32.min.css");
const UPLOT_LICENSE: &str = include_str!("page/vendor/uPlot.LICENSE");
const SHA3_JS: &str = include_str!("page/vendor/js-sha3-0.13.0.min.js");
const SHA3_LICENSE: &str = include_str!("page/vendor/js-sha3.LICENSE");

/// The status page, served at `/` and `/status`.
pub static STATUS_PAGE: LazyLock<String> = LazyLock::new(render);

/// A licence as a comment kept by minifiers and readers alike.
fn licence(name: &str, text: &str) -> String {
    format!("/*! {name}\n{}\n*/", text.replace("*/", "* /"))
}

fn render() -> String {
    let style = format!(
        "<style>\n{}\n{UPLOT_CSS}\n{STYLE}</style>",
        licence("uPlot", UPLOT_LICENSE)
    );
    let script = format!(
        "<script>\n{}\n{UPLOT_JS}\n{}\n{SHA3_JS}\n</script>\n<script>\n{SCRIPT}</script>",
        licence("uPlot", UPLOT_LICENSE),
        licence("js-sha3", SHA3_LICENSE)
    );
    TEMPLATE
        .replacen("<!--@style-->", &style, 1)
        .replacen("<!--@script-->", &script, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_its_parts_once_and_closes_each_script_where_it_should() {
        let page = STATUS_PAGE.as_str();
        assert!(!page.contains("<!--@"), "a placeholder was left");
        for part in [STYLE, SCRIPT, UPLOT_JS, UPLOT_CSS, SHA3_JS] {
            assert_eq!(page.matches(part.trim()).count(), 1);
        }
        // Inline code must not end its own element early.
        for lib in [SCRIPT, UPLOT_JS, SHA3_JS] {
            assert!(!lib.to_ascii_lowercase().contains("</script"));
        }
        assert!(!STYLE.contains("</style") && !UPLOT_CSS.contains("</style"));
        assert_eq!(page.matches("<script>").count(), 2);
        assert!(page.contains("Copyright (c) 2022 Leon Sorokin"));
        assert!(page.contains("Chen, Yi-Cyuan"));
    }
}
