//! How `csm run` fails.

/// A failure of `csm run`, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    /// 1: runtime failure; 2: usage or config error.
    pub exit_code: u8,
    pub message: String,
}

impl RunError {
    pub fn usage(message: impl Into<String>) -> Self {
        RunError {
            exit_code: 2,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        RunError {
            exit_code: 1,
            message: message.into(),
        }
    }
}
