//! `index.html`: every chart of a run on one page that opens from disk (no server, no
//! external resources: the charts are linked by relative name, the little script that
//! counts loaded charts is inline).

use crate::charts::ChartFile;

pub const FILE: &str = "index.html";

/// The page for the charts of `host`, in the order drawn. Each chart is an `<img>` titled
/// with its own `<title>`; the page's title becomes `csm charts: N of N loaded` once every
/// image has loaded (what the Chromium test reads), or names the ones that failed.
pub fn page(host: &str, files: &[ChartFile]) -> String {
    let mut body = String::new();
    for (name, svg) in files {
        let title = svg_title(svg).unwrap_or_else(|| name.clone());
        body.push_str(&format!(
            "<figure id=\"{id}\"><figcaption><a href=\"{name}\">{title}</a></figcaption>\
             <img src=\"{name}\" alt=\"{title}\" onload=\"csmLoaded(this, true)\" \
             onerror=\"csmLoaded(this, false)\"></figure>\n",
            id = escape(name),
            name = escape(name),
            title = escape(&title),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>csm charts of {host}</title>\n<style>body{{font-family:sans-serif;margin:1em}}\
         figure{{margin:0 0 2em 0}}img{{max-width:100%;border:1px solid #ddd}}</style>\n\
         <script>var csmDone=0,csmFailed=[],csmTotal={total};\
         function csmLoaded(img,ok){{csmDone++;if(!ok)csmFailed.push(img.getAttribute('src'));\
         if(csmDone==csmTotal)document.title=csmFailed.length?'csm charts: failed '+\
         csmFailed.join(' '):'csm charts: '+csmDone+' of '+csmTotal+' loaded';}}</script>\
         </head>\n<body><h1>csm charts of {host}</h1>\n{body}</body></html>\n",
        host = escape(host),
        total = files.len(),
    )
}

/// The chart's own title: the text of the first `<text>` element (plotters writes the
/// page title first).
fn svg_title(svg: &str) -> Option<String> {
    let start = svg.find("<text")?;
    let open_end = start + svg[start..].find('>')? + 1;
    let close = open_end + svg[open_end..].find("</text>")?;
    Some(unescape(&svg[open_end..close]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_is_on_the_page_under_its_own_title() {
        let files = vec![
            (
                "cpu.svg".to_string(),
                "<svg><text x=\"1\">CPU per user on a&amp;b</text><text>x</text></svg>".to_string(),
            ),
            ("net-eth0.svg".to_string(), "<svg></svg>".to_string()),
        ];
        let html = page("a&b", &files);
        assert!(html.contains("<img src=\"cpu.svg\" alt=\"CPU per user on a&amp;b\""));
        assert!(html.contains("<a href=\"net-eth0.svg\">net-eth0.svg</a>"));
        assert!(html.contains("csmTotal=2;"));
        assert!(!html.contains("http"), "no external resources");
    }
}
