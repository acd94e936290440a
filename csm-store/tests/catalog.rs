//! The table list is written once, in the catalog at the end of `tables.rs`. The Python
//! readers in `analysis/` cannot use it directly, so this keeps their copy true to it.

use std::path::Path;

use csm_store::Table;

/// The names in `NAME = ("a", "b", ...)` on one line of the Python file.
fn python_tuple(source: &str, name: &str) -> Vec<String> {
    let prefix = format!("{name} = (");
    let line = source
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("analysis/csm_analysis/load.py has no line `{prefix}...`"));
    line[prefix.len()..]
        .trim_end_matches(')')
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn python_readers_list_the_catalog_tables() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analysis/csm_analysis/load.py");
    let source = std::fs::read_to_string(&path).expect("read analysis/csm_analysis/load.py");
    let names = |tables: Vec<Table>| -> Vec<String> {
        tables.iter().map(|t| t.name().to_string()).collect()
    };
    assert_eq!(
        python_tuple(&source, "TABLES"),
        names(Table::written().collect())
    );
    assert_eq!(
        python_tuple(&source, "ROLLUPS"),
        names(Table::rollups().collect())
    );
}

#[test]
fn every_table_is_written_or_rolled_up_once() {
    let written: Vec<Table> = Table::written().collect();
    let rollups: Vec<Table> = Table::rollups().collect();
    assert_eq!(written.len() + rollups.len(), Table::EVERY.len());
    assert!(written.iter().all(|t| !rollups.contains(t)));
}
