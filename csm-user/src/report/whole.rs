//! The whole report, as built from the sections' results and drawn by `render`.

use serde::Serialize;

use super::{alerts, beancounters, gaps, interfaces, ping, users};

/// The whole report: the range and each section asked for.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub host: String,
    pub from: String,
    pub to: String,
    #[serde(skip)]
    pub from_us: i64,
    #[serde(skip)]
    pub to_us: i64,
    pub time_zone: String,
    /// The 1-minute roll-ups were read (range over 6 h) where they exist.
    pub rollups: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<users::Users>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<interfaces::Interface>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping: Option<Vec<ping::Target>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beancounters: Option<Vec<beancounters::Growth>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gaps: Option<Vec<gaps::Gap>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<alerts::Alert>>,
}
