//! Hot reload of the mapping: watch, poll, validate, publish.
//!
//! In Kubernetes the mapping is a ConfigMap volume. kubelet updates it by writing a new hidden
//! timestamped directory and renaming the `..data` symlink over the old one; the visible
//! `mapping.yaml` is a symlink to `..data/mapping.yaml` that itself never changes. Watching the
//! file misses that (dnsmasq's `--hostsdir` does), so we watch the *directory* (inotify via the
//! `notify` crate) and also poll: every interval the source is read and hashed, which catches what
//! no event reports (the parent directory's own symlink swapped, a watch lost with a deleted
//! directory). Both paths lead to the same [`Reloader::reload`].
//!
//! A reload runs on this module's own thread: read, hash, and if the content changed parse and
//! validate into a complete [`Snapshot`], then publish it with one `ArcSwap` store. Queries never
//! wait for it and see the whole old or the whole new mapping. A bad file changes nothing: the last
//! good mapping stays in service, one warning names file, line and cause, a counter moves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tracing::{debug, info, warn};

use super::file::{self, Format, Loaded, MappingError};
use super::operator::OperatorSettings;
use super::{SharedMapping, Snapshot, short_hash};
use crate::lifecycle::{Stop, Threads};

/// After the first event of a burst, wait this long for quiet before reloading (an editor or
/// kubelet produces several events per change)...
const DEBOUNCE_QUIET: Duration = Duration::from_millis(100);
/// ...but never longer than this after the first event.
const DEBOUNCE_MAX: Duration = Duration::from_millis(400);

/// Reload counters, read by the admin endpoint and tests.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Snapshots published after start.
    pub reloads: AtomicU64,
    /// Reload attempts that failed (each distinct failure counted once).
    pub failures: AtomicU64,
    /// Unix time (seconds) of the last successful load, start-up included.
    pub last_success_unix: AtomicU64,
    /// True while the mapping source as it is now was rejected (the mapping in service is older
    /// than it): what an alert needs, as the failure counter moves once per distinct error.
    pub source_rejected: AtomicBool,
}

impl ReloadStats {
    fn stamp(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_success_unix.store(now, Ordering::Relaxed);
    }
}

enum Msg {
    /// A filesystem event: debounce, then reload if the content changed.
    Changed,
    /// SIGHUP or an explicit request: reload now.
    Force,
    Stop,
}

/// What the reloader watches and how it reads it.
pub(crate) struct Watched {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    /// The operator config's `listen` and `resolver` in service (they need a restart).
    pub(crate) settings: Option<OperatorSettings>,
    pub(crate) default_ttl: u32,
    pub(crate) poll_interval: Duration,
}

/// Handle to the reload thread.
pub(crate) struct Reloader {
    tx: mpsc::Sender<Msg>,
    threads: Threads,
}

impl Reloader {
    /// Starts watching `path` (file or directory), written in `format`. `settings` are the
    /// operator config's `listen` and `resolver` in service (they need a restart to change).
    pub(crate) fn spawn(
        source: Watched,
        shared: SharedMapping,
        stats: Arc<ReloadStats>,
        stop: &Stop,
    ) -> std::io::Result<Reloader> {
        let Watched {
            path,
            format,
            settings,
            default_ttl,
            poll_interval,
        } = source;
        let (tx, rx) = mpsc::channel();
        let mut state = State {
            current_hash: shared.load().content_hash,
            last_sig: None,
            path,
            format,
            settings,
            default_ttl,
            shared,
            stats,
            last_error: None,
            watch: None,
            events: tx.clone(),
        };
        // Arm the watch before returning, so that no change made after start() returns can be
        // missed; then compare once, for a change made between the first load and the watch.
        state.arm_watch();
        state.poll();
        let mut threads = Threads::default();
        threads.spawn("reload", move || {
            // Queries first: reloading only uses CPU the query path leaves over.
            crate::sys::background_priority();
            state.run(rx, poll_interval)
        })?;
        let stopper = Mutex::new(tx.clone());
        stop.on_stop(move |_| {
            let _ = stopper
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(Msg::Stop);
        });
        Ok(Reloader { tx, threads })
    }

    /// Re-reads the source at once (what SIGHUP does).
    pub(crate) fn reload_now(&self) {
        let _ = self.tx.send(Msg::Force);
    }

    /// After the stop (which tells it to end): awaits the reload thread until `deadline`.
    pub(crate) async fn shutdown(self, deadline: Instant) -> bool {
        self.threads.join(deadline).await
    }
}

struct State {
    path: PathBuf,
    format: Format,
    /// The operator config's settings in service, to warn when the file asks for others.
    settings: Option<OperatorSettings>,
    default_ttl: u32,
    shared: SharedMapping,
    stats: Arc<ReloadStats>,
    current_hash: u64,
    /// Metadata fingerprint of the source at the last poll.
    last_sig: Option<u64>,
    /// The last failure, so that a poll seeing the same broken file does not log it again.
    last_error: Option<String>,
    watch: Option<Watch>,
    events: mpsc::Sender<Msg>,
}

/// A directory watch and the identity of what it watches, to notice when that changes.
struct Watch {
    _watcher: RecommendedWatcher,
    dirs: Vec<(PathBuf, Option<DirId>)>,
}

/// (canonical path, device, inode) of a watched directory.
type DirId = (PathBuf, u64, u64);

fn dir_id(dir: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    let canonical = std::fs::canonicalize(dir).ok()?;
    let m = std::fs::metadata(&canonical).ok()?;
    Some((canonical, m.dev(), m.ino()))
}

impl State {
    fn run(&mut self, rx: mpsc::Receiver<Msg>, poll_interval: Duration) {
        let mut next_poll = Instant::now() + poll_interval;
        loop {
            let wait = next_poll.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Changed) => {
                    let first = Instant::now();
                    let mut force = false;
                    // Debounce: keep collecting events until quiet or the burst is too long.
                    loop {
                        let left = DEBOUNCE_MAX.saturating_sub(first.elapsed());
                        match rx.recv_timeout(DEBOUNCE_QUIET.min(left)) {
                            Ok(Msg::Changed) if !left.is_zero() => continue,
                            Ok(Msg::Changed) => break,
                            Ok(Msg::Force) => {
                                force = true;
                                break;
                            }
                            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                            Err(RecvTimeoutError::Timeout) => break,
                        }
                    }
                    self.reload(force);
                }
                Ok(Msg::Force) => self.reload(true),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    self.rearm_if_moved();
                    self.poll();
                    next_poll = Instant::now() + poll_interval;
                }
            }
        }
    }

    /// The directories to watch: the file's parent, or for a directory source the directory
    /// and its parent (which sees the directory itself replaced).
    fn watch_dirs(&self) -> Vec<PathBuf> {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if self.path.is_dir() {
            vec![self.path.clone(), parent(&self.path)]
        } else {
            vec![parent(&self.path)]
        }
    }

    fn arm_watch(&mut self) {
        let tx = self.events.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            // Our own reads show up as access events: they must not trigger reloads.
            if let Ok(e) = event
                && !matches!(e.kind, EventKind::Access(_))
            {
                let _ = tx.send(Msg::Changed);
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                warn!("cannot watch the mapping (polling only): {e}");
                self.watch = None;
                return;
            }
        };
        let mut dirs = Vec::new();
        for dir in self.watch_dirs() {
            if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                debug!("cannot watch {}: {e}; the poll covers it", dir.display());
            }
            let id = dir_id(&dir);
            dirs.push((dir, id));
        }
        self.watch = Some(Watch {
            _watcher: watcher,
            dirs,
        });
    }

    /// A watched directory replaced (symlink swapped, deleted and recreated) leaves the watch on
    /// the old inode: watch the new one.
    fn rearm_if_moved(&mut self) {
        let moved = match &self.watch {
            None => true,
            Some(w) => {
                w.dirs.iter().any(|(dir, id)| dir_id(dir) != *id)
                    || w.dirs.iter().map(|(d, _)| d).ne(self.watch_dirs().iter())
            }
        };
        if moved {
            debug!("mapping directory changed identity; re-arming the watch");
            self.arm_watch();
        }
    }

    /// The timer's check: re-read only if the files' metadata changed (a stat per file every
    /// poll, instead of reading and hashing the whole mapping: a 100k-name file is 4 MB).
    fn poll(&mut self) {
        let sig = file::stat_signature(&self.path);
        if sig.is_some() && sig == self.last_sig {
            return;
        }
        self.last_sig = sig;
        self.reload(false);
    }

    /// Reads and hashes the source, and publishes it if the content changed (watch events and
    /// SIGHUP come here directly: they say something changed even if the metadata looks the
    /// same, e.g. on a file system with coarse timestamps).
    fn reload(&mut self, force: bool) {
        let t0 = Instant::now();
        let source = match file::read_source(&self.path) {
            Ok(s) => s,
            Err(e) => return self.failed(e),
        };
        if source.hash == self.current_hash {
            if self.last_error.take().is_some() {
                self.stats.source_rejected.store(false, Ordering::Relaxed);
                info!(hash = %short_hash(source.hash), "mapping source is valid again (unchanged from the mapping in service)");
            } else if force {
                info!(hash = %short_hash(source.hash), "mapping unchanged; nothing to reload");
            }
            return;
        }
        match file::parse_source_as(self.format, &source, self.default_ttl) {
            Ok(Loaded { snapshot, operator }) => {
                self.publish(snapshot, t0);
                if let Some((settings, unknown)) = operator {
                    self.note_settings(&settings, &unknown);
                }
            }
            Err(e) => self.failed(e),
        }
    }

    /// The operator's file was reloaded: its rules are in service; say what was not taken.
    fn note_settings(&self, settings: &OperatorSettings, unknown: &[String]) {
        warn_unknown_fields(&self.path.display().to_string(), unknown);
        if let Some(current) = &self.settings
            && current != settings
        {
            warn!(
                listen = %current.listen,
                resolver = %current.resolver,
                new_listen = %settings.listen,
                new_resolver = %settings.resolver,
                "the config file names another listen address or resolver: the rules are \
                 reloaded, those two take effect at the next restart"
            );
        }
    }

    fn publish(&mut self, snapshot: Snapshot, t0: Instant) {
        let (names, v4, v6) = snapshot.summary();
        let hash = snapshot.content_hash;
        // Counted before it is visible, so that whoever sees the new answers sees the reload
        // counted (found by a test under CPU load: the answer came before the count).
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        self.stats.stamp();
        self.stats.source_rejected.store(false, Ordering::Relaxed);
        self.shared.store(Arc::new(snapshot));
        self.current_hash = hash;
        let recovered = self.last_error.take().is_some();
        info!(
            names,
            v4,
            v6,
            hash = %short_hash(hash),
            elapsed_ms = t0.elapsed().as_secs_f64() * 1e3,
            recovered,
            "mapping reloaded"
        );
    }

    fn failed(&mut self, e: MappingError) {
        self.stats.source_rejected.store(true, Ordering::Relaxed);
        let message = e.to_string();
        if self.last_error.as_deref() == Some(message.as_str()) {
            return;
        }
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let current = self.shared.load();
        warn!(
            "mapping reload failed, keeping the last good mapping ({} names, {} rules): {message}",
            current.len(),
            current.rule_count()
        );
        self.last_error = Some(message);
    }
}

/// One warning for the fields of the operator's config that splitdns does not know (ignored:
/// the operator may add fields, and refusing the file would take the pod's DNS down).
pub(crate) fn warn_unknown_fields(origin: &str, unknown: &[String]) {
    if !unknown.is_empty() {
        warn!(
            file = origin,
            fields = %unknown.join(", "),
            "ignoring fields splitdns does not know in the operator's config"
        );
    }
}

/// Marks the time of the start-up load.
pub(crate) fn stamp_initial(stats: &ReloadStats) {
    stats.stamp();
}
