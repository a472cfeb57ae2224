//! The one error type of loading a mapping: every message names the file, and for content
//! errors the line and column.

use serde_saphyr::Location;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{path}: cannot read mapping file: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
}

impl MappingError {
    pub(super) fn at(path: &str, loc: Location, message: impl Into<String>) -> MappingError {
        MappingError::Invalid {
            path: path.to_owned(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
        }
    }
}
