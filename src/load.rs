//! Loading the mapping: at start (logged, with what it means for who is answered), for
//! `splitdns check`, and the reload thread that keeps it current.

use std::time::Instant;

use tracing::{info, warn};

use crate::mapping::file::{Format, Loaded};
use crate::mapping::reload::Reloader;
use crate::shared::Shared;
use crate::{Config, Error, MappingError, MappingSource, Snapshot, cli, config, mapping};

/// Loads and validates the configured mapping.
pub fn load_mapping(source: &MappingSource, default_ttl: u32) -> Result<Snapshot, MappingError> {
    load_source(source, default_ttl).map(|l| l.snapshot)
}

/// Loads and validates the configured source, with what the operator's config says besides.
fn load_source(source: &MappingSource, default_ttl: u32) -> Result<Loaded, MappingError> {
    match source.path() {
        Some(path) => mapping::file::load_as(source.format(), path, default_ttl),
        None => Ok(Loaded {
            snapshot: mapping::file::parse(
                config::EMBEDDED_MAPPING,
                "<built-in example>",
                default_ttl,
            )?,
            operator: None,
        }),
    }
}

/// Validates a mapping file or directory, or the operator's JSON config, and summarises it (for
/// `splitdns check`). The syntax is told from the content: a JSON object is the operator's
/// config, anything else a YAML mapping.
pub fn check_mapping(path: &std::path::Path) -> Result<String, MappingError> {
    let format = match std::fs::read_to_string(path) {
        Ok(text) => Format::sniff(&text),
        // A directory (of YAML files), or unreadable: the YAML loader says what is wrong.
        Err(_) => Format::Yaml,
    };
    let loaded = mapping::file::load_as(format, path, 5)?;
    let snapshot = &loaded.snapshot;
    let (names, v4, v6) = snapshot.summary();
    let hash = snapshot.short_hash();
    Ok(match loaded.operator {
        None => format!(
            "{}: OK: {names} names, {v4} IPv4 and {v6} IPv6 addresses, {} rules, content hash \
             {hash}",
            path.display(),
            snapshot.rule_count()
        ),
        Some((settings, unknown)) => {
            let mut out = format!(
                "{}: OK: operator config: {} rules, listen {}, resolver {}, content hash {hash}",
                path.display(),
                snapshot.rule_count(),
                settings.listen,
                settings.resolver
            );
            if !unknown.is_empty() {
                out.push_str(&format!("\nignored fields: {}", unknown.join(", ")));
            }
            out
        }
    })
}

/// Loads the configured mapping and logs what it holds, and which file it came from.
pub(crate) fn load_logged(config: &Config) -> Result<Loaded, MappingError> {
    let t0 = Instant::now();
    let loaded = load_source(&config.mapping, config.ttl)?;
    let snapshot = &loaded.snapshot;
    let (names, v4, v6) = snapshot.summary();
    info!(
        names,
        v4,
        v6,
        rules = snapshot.rule_count(),
        hash = %snapshot.short_hash(),
        source = %config.mapping,
        elapsed_ms = t0.elapsed().as_secs_f64() * 1e3,
        "mapping loaded"
    );
    if let (Some((_, unknown)), Some(path)) = (&loaded.operator, config.mapping.path()) {
        mapping::reload::warn_unknown_fields(&path.display().to_string(), unknown);
    }
    if config.mapping == MappingSource::Embedded {
        warn!(
            "no config file given, and neither {} nor {} exists: serving the built-in example",
            cli::OPERATOR_CONFIG,
            cli::DEFAULT_MAPPING
        );
    }
    if config.listen.iter().any(|a| !a.ip().is_loopback()) {
        // Not an open resolver: see server::allow.
        let allowed: Vec<String> = config
            .allow
            .iter()
            .map(|n| format!("{}/{}", n.addr, n.prefix))
            .collect();
        info!(
            allow = %allowed.join(","),
            "listening beyond loopback: answering this pod's own addresses{} and ignoring everyone else",
            if allowed.is_empty() { "" } else { " and the --allow networks (UDP replies at most 3x the query)" }
        );
    }
    Ok(loaded)
}

/// The reload thread, for a mapping that comes from a file (the built-in one never changes).
/// `settings`: the operator config's `listen` and `resolver` as read at start.
pub(crate) fn spawn_reloader(
    shared: &Shared,
    config: &Config,
    settings: Option<mapping::operator::OperatorSettings>,
) -> Result<Option<Reloader>, Error> {
    let Some(path) = config.mapping.path() else {
        return Ok(None);
    };
    Reloader::spawn(
        mapping::reload::Watched {
            path: path.to_path_buf(),
            format: config.mapping.format(),
            settings,
            default_ttl: config.ttl,
            poll_interval: config.poll_interval,
        },
        shared.mapping.clone(),
        shared.reload.clone(),
        &shared.stop,
    )
    .map(Some)
    .map_err(Error::Thread)
}
