//! The one error type of loading a mapping: every message names the file, and for content
//! errors the line and column.

/// A place in a source file: 1-based line and column (in characters), as every error shows it.
/// Both syntaxes (YAML mapping, the operator's JSON) report their places in this one type, so
/// the validation they share ([`super::validate`]) cannot tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: u64,
    pub(crate) column: u64,
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Pos {
        Pos {
            line: l.line(),
            column: l.column(),
        }
    }
}

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
    pub(super) fn at(path: &str, pos: impl Into<Pos>, message: impl Into<String>) -> MappingError {
        let pos = pos.into();
        MappingError::Invalid {
            path: path.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}
