//! Sources read the kernel and produce raw cumulative samples; the model turns them into
//! interval rows. A source that cannot run on this host says so with
//! [`SourceError::Unsupported`], which drives the fallback to /proc.

pub mod clock;
pub mod ebpf;
pub mod host;
pub mod link_errors;
pub mod mounts;
pub mod netns;
pub mod ping;
pub mod procfs;
pub mod taskstats;
pub mod users;

/// Why a source cannot give data.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// This host cannot run the source at all (no BTF, no permission, verifier refusal…):
    /// another backend should be used.
    #[error("{what} is not supported here: {why}")]
    Unsupported { what: &'static str, why: String },
    /// The source runs here but this attempt failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl SourceError {
    pub fn unsupported(what: &'static str, why: impl Into<String>) -> Self {
        SourceError::Unsupported {
            what,
            why: why.into(),
        }
    }
}
