//! Durations as users write them: `500ms`, `1s`, `5m`, `2h`, `90d` (the parser is shared
//! with `csm-plot`, in the store crate).

pub use csm_store::time::parse_duration;
