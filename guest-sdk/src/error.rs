use std::fmt;

/// Why an operator could not handle a record.
///
/// [`Error::BadInput`] hands the record to the pipeline's `on_error` policy (fail, skip or
/// dead-letter); [`Error::Fatal`] fails the task whatever the policy. Conversions from the
/// usual parse errors produce `BadInput`, so `?` on a malformed record does the right thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// This record is malformed or unexpected.
    BadInput(String),
    /// The operator cannot continue.
    Fatal(String),
}

impl Error {
    /// A bad-input error with `message`.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error::BadInput(message.into())
    }

    /// A fatal error with `message`.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            Error::BadInput(m) | Error::Fatal(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadInput(m) => write!(f, "bad input: {m}"),
            Error::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::str::Utf8Error> for Error {
    fn from(e: std::str::Utf8Error) -> Self {
        Error::BadInput(format!("not UTF-8: {e}"))
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(e: std::string::FromUtf8Error) -> Self {
        Error::BadInput(format!("not UTF-8: {e}"))
    }
}

impl From<std::num::ParseIntError> for Error {
    fn from(e: std::num::ParseIntError) -> Self {
        Error::BadInput(format!("not an integer: {e}"))
    }
}

impl From<std::num::ParseFloatError> for Error {
    fn from(e: std::num::ParseFloatError) -> Self {
        Error::BadInput(format!("not a number: {e}"))
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::BadInput(format!("JSON: {e}"))
    }
}

/// Result alias for operator code.
pub type Result<T, E = Error> = std::result::Result<T, E>;
