//! The one table renderer of `csm report`: every section's text and CSV go through it, so
//! alignment, quoting and the escaping of names other users choose are written once.
//!
//! - Text: columns aligned (names left, numbers right); every cell shown through
//!   csm-store's [`safe_text`], so an interface named with an escape sequence or a
//!   right-to-left override is printed as visible `\u{…}`, never raw.
//! - CSV: one table per section with a header, the section's name in the first column;
//!   cells quoted per RFC 4180 where needed, and text cells that start like a spreadsheet
//!   formula prefixed with `'` ([`csv_text_cell`]); numbers stay numbers.

use std::fmt::Write as _;

use serde::Serialize;

use csm_store::names::{csv_text_cell, safe_text};

/// Columns of text: the first `left` aligned left (names), the rest right (numbers).
pub struct TextTable {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    left: usize,
}

impl TextTable {
    pub fn new(header: Vec<&'static str>, left: usize) -> TextTable {
        TextTable {
            header,
            rows: Vec::new(),
            left,
        }
    }

    /// A row, cells in the header's order (shown safe: see the module's notes).
    pub fn push(&mut self, row: Vec<String>) {
        let safe = row
            .into_iter()
            .map(|cell| match safe_text(&cell) {
                std::borrow::Cow::Borrowed(_) => cell,
                std::borrow::Cow::Owned(escaped) => escaped,
            })
            .collect();
        self.rows.push(safe);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header and the rows, each line indented and trimmed at the right.
    pub fn write(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i < self.left {
                    let _ = write!(line, " {cell:<width$}");
                } else {
                    let _ = write!(line, "  {cell:>width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// One CSV table: a name (the first column of every row) and its rows, each a JSON object
/// whose keys are the columns (the first row's keys make the header).
pub struct CsvTable {
    pub name: &'static str,
    pub rows: Vec<serde_json::Value>,
}

impl CsvTable {
    /// A table of `items` as serde writes them (base units, the JSON's field names).
    pub fn of<'a, T: Serialize + 'a>(
        name: &'static str,
        items: impl IntoIterator<Item = &'a T>,
    ) -> CsvTable {
        CsvTable {
            name,
            rows: items.into_iter().map(value).collect(),
        }
    }
}

/// An item as a JSON value (an object for the sections' rows).
pub fn value(item: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(item).unwrap_or_default()
}

/// The tables one after the other, a blank line between; empty tables left out.
pub fn csv(tables: impl IntoIterator<Item = CsvTable>) -> Result<String, String> {
    let fail = |err: csv::Error| format!("cannot write CSV: {err}");
    let mut out = Vec::new();
    for table in tables.into_iter().filter(|t| !t.rows.is_empty()) {
        if !out.is_empty() {
            out.push(b'\n');
        }
        let mut writer = csv::Writer::from_writer(&mut out);
        let keys: Vec<String> = match &table.rows[0] {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        writer
            .write_record(std::iter::once("section").chain(keys.iter().map(String::as_str)))
            .map_err(fail)?;
        for row in &table.rows {
            let cells = keys.iter().map(|k| csv_cell(&row[k]));
            writer
                .write_record(std::iter::once(table.name.to_string()).chain(cells))
                .map_err(fail)?;
        }
        writer
            .flush()
            .map_err(|err| format!("cannot write CSV: {err}"))?;
    }
    String::from_utf8(out).map_err(|err| format!("cannot write CSV: {err}"))
}

/// A CSV cell: numbers as they are, text defused ([`csv_text_cell`]), null empty.
fn csv_cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => csv_text_cell(s).into_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_are_escaped_and_aligned() {
        let mut table = TextTable::new(vec!["iface", "rx"], 1);
        table.push(vec!["e\x1b[31mvil".into(), "1 B".into()]);
        table.push(vec!["a\u{202e}b".into(), "10 B".into()]);
        let mut out = String::new();
        table.write(&mut out);
        assert!(!out.contains('\x1b') && !out.contains('\u{202e}'), "{out}");
        assert_eq!(
            out,
            "  iface             rx\n  e\\u{1b}[31mvil   1 B\n  a\\u{202e}b      10 B\n"
        );
    }

    #[test]
    fn csv_quotes_defuses_formulas_and_keeps_numbers() {
        let rows = [
            serde_json::json!({"iface": "=1+2*cmd|x", "rx": -5, "note": "a,\"b\"\nc"}),
            serde_json::json!({"iface": "-x", "rx": 3.5, "note": null}),
        ];
        let text = csv([CsvTable {
            name: "interfaces",
            rows: rows.to_vec(),
        }])
        .unwrap();
        assert_eq!(
            text,
            "section,iface,rx,note\n\
             interfaces,'=1+2*cmd|x,-5,\"a,\"\"b\"\"\nc\"\n\
             interfaces,'-x,3.5,\n"
        );
        // Read back by a CSV reader: the exact name behind the prefix, the number intact.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let first = reader.records().next().unwrap().unwrap();
        assert_eq!(
            (&first[1], &first[2], &first[3]),
            ("'=1+2*cmd|x", "-5", "a,\"b\"\nc")
        );
    }
}
