//! The CLI's error: one message for a person, with the cause chain kept
//! for printing.

use std::error::Error as StdError;
use std::fmt;

/// Why a command failed.
pub struct Failure {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// A command's result.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    /// A failure with no underlying cause.
    pub fn msg(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            source: None,
        }
    }

    /// The message, then each cause that adds something to it, one per
    /// line.
    pub fn render(&self) -> String {
        let mut out = self.message.clone();
        let mut shown = self.message.clone();
        let mut next: Option<&(dyn StdError + 'static)> = match &self.source {
            Some(source) => Some(source.as_ref()),
            None => None,
        };
        while let Some(cause) = next {
            let text = cause.to_string();
            // Many errors repeat their source in their own message.
            if !shown.contains(&text) {
                out.push_str("\n  because: ");
                out.push_str(&text);
                shown.push_str(&text);
            }
            next = cause.source();
        }
        out
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            message: error.to_string(),
            // The message is the error's; its causes follow.
            source: match error.source() {
                Some(_) => Some(Box::new(error)),
                None => None,
            },
        }
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    /// Wraps the error as the cause of `message`.
    fn context(self, message: impl Into<String>) -> Result<T>;
    /// As `context`, with the message built only on failure.
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: StdError + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.map_err(|e| Failure {
            message: message.into(),
            source: Some(Box::new(e)),
        })
    }

    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| Failure {
            message: message().into(),
            source: Some(Box::new(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn render_skips_causes_the_message_already_says() {
        let io = std::io::Error::other("disk full");
        let failure = Failure::from(Repeats(io));
        assert_eq!(failure.render(), "outer failed: disk full");
        let io = std::io::Error::other("disk full");
        let failure = Err::<(), _>(io).context("writing hub.json").unwrap_err();
        assert_eq!(failure.render(), "writing hub.json\n  because: disk full");
    }
}
