//! Helpers shared by the end-to-end tests: the real `csm` binary, network namespaces,
//! test users, kernel counters and the Parquet read-back. Everything a test creates is
//! removed by a Drop guard, so a failing assertion leaves nothing behind.

pub mod net;
