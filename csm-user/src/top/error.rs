//! Why `csm top` stops: what the command and its parts return.

/// Why `csm top` stopped without showing anything: one line, and the exit status.
#[derive(Debug)]
pub struct TopError {
    pub message: String,
    pub exit_code: u8,
}

impl TopError {
    pub fn usage(message: impl Into<String>) -> Self {
        TopError {
            message: message.into(),
            exit_code: 2,
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        TopError {
            message: message.into(),
            exit_code: 1,
        }
    }
}
