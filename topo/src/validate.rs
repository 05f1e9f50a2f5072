//! Validation of a topology. (Stub: to be filled.)

use std::fmt;
use std::path::Path;

use crate::model::Topology;

/// A topology error: one line naming the origin, the line, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoError {
    pub origin: String,
    /// 1-based line of the offending field, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `sddc.clusters[0].hosts`.
    pub field: String,
    pub message: String,
}

impl TopoError {
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        TopoError {
            origin: path.display().to_string(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {err}"),
        }
    }
}

impl fmt::Display for TopoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for TopoError {}

pub(crate) fn parse_and_validate(src: &str, origin: &str) -> Result<Topology, TopoError> {
    toml::from_str(src).map_err(|e| TopoError {
        origin: origin.to_string(),
        line: None,
        field: String::new(),
        message: e.message().to_string(),
    })
}
