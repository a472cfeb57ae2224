//! Reading a mapping source without parsing it: one file, or every mapping file of a directory
//! (a ConfigMap volume: the visible keys are symlinks into kubelet's `..data/`), with the content
//! hash that tells a changed source from an unchanged one, and the cheap metadata fingerprint the
//! poll compares before reading anything.

use std::path::{Path, PathBuf};

use super::error::MappingError;
use super::{Fnv1a, fnv1a};

/// The raw text of a mapping source: one file, or every `*.yaml` / `*.yml` file of a directory
/// (hidden files skipped, which also skips a ConfigMap volume's `..data` machinery), in name order.
pub struct SourceText {
    pub files: Vec<(String, String)>,
    /// FNV-1a over every file's name and contents: equal hashes mean nothing to publish.
    pub hash: u64,
}

/// Reads a mapping source without parsing it.
pub fn read_source(path: &Path) -> Result<SourceText, MappingError> {
    let origin = path.display().to_string();
    let read_err = |path: String| move |source| MappingError::Read { path, source };
    let meta = std::fs::metadata(path).map_err(read_err(origin.clone()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err(origin.clone()))? {
            let entry = entry.map_err(read_err(origin.clone()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            // `metadata` follows symlinks: ConfigMap keys are symlinks into `..data/`.
            if yaml
                && !name.starts_with('.')
                && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
            {
                names.push(entry.path());
            }
        }
        names.sort();
        if names.is_empty() {
            return Err(MappingError::Read {
                path: origin,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "directory holds no *.yaml file",
                ),
            });
        }
        for file in names {
            let o = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(read_err(o.clone()))?;
            files.push((o, text));
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(read_err(origin.clone()))?;
        files.push((origin, text));
    }
    let mut hash = Fnv1a::default();
    for (name, text) in &files {
        for part in [name.as_bytes(), &[0], text.as_bytes(), &[0]] {
            hash.update(part);
        }
    }
    Ok(SourceText {
        hash: hash.0,
        files,
    })
}

/// A fingerprint of the source's metadata (device, inode, size, mtime and ctime of the file, or
/// of the directory and each of its mapping files, symlinks followed): equal fingerprints mean
/// nothing was written. `None` if anything cannot be read (the caller then reads the source to
/// report the error).
pub(crate) fn stat_signature(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut fields: Vec<i64> = Vec::new();
    let mut add = |m: &std::fs::Metadata| {
        fields.extend([m.dev() as i64, m.ino() as i64, m.len() as i64]);
        fields.extend([m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()]);
    };
    let meta = std::fs::metadata(path).ok()?;
    add(&meta);
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if let Ok(m) = std::fs::metadata(&e) {
                add(&m);
            }
        }
    }
    let bytes: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
    Some(fnv1a(&bytes))
}
