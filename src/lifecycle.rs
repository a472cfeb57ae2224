//! One lifecycle for every component: one stop signal they all subscribe to, threads and tasks
//! tracked so that shutdown can await them until one deadline, and nothing that blocks the
//! runtime thread while it waits.
//!
//! - [`Stop`]: the data plane's one stop. Async tasks watch it ([`Stop::subscribe`]); blocking and
//!   epoll threads register a hook ([`Stop::on_stop`]) that wakes them (a socket shut down for
//!   reading, an eventfd, a channel message), called once with the shutdown deadline.
//! - [`Threads`]: the threads of a component. Each tells a oneshot when its body returns, so
//!   [`Threads::join`] awaits them (until the deadline) instead of blocking in `join()`; a thread
//!   whose body panicked drops its sender and is reported.
//! - [`Tasks`]: the runtime tasks spawned outside a listener's own accounting (the loop check,
//!   TCP retries of alias lookups, the code-page timer), drained at shutdown, aborted past the
//!   deadline.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

type Hook = Box<dyn Fn(Instant) + Send + Sync>;

/// The one stop signal: a flag for readiness and threads, a watch for tasks, hooks that wake
/// blocked threads.
pub(crate) struct Stop {
    flag: AtomicBool,
    tx: watch::Sender<bool>,
    hooks: Mutex<Vec<Hook>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            flag: AtomicBool::new(false),
            tx: watch::channel(false).0,
            hooks: Mutex::new(Vec::new()),
        }
    }
}

impl Stop {
    /// Stops everything: in-flight work may finish until `deadline`.
    pub(crate) fn signal(&self, deadline: Instant) {
        if self.flag.swap(true, Ordering::SeqCst) {
            return;
        }
        self.tx.send_replace(true);
        for hook in self.hooks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            hook(deadline);
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// A receiver whose `changed()` fires at the stop.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// `hook` runs once at the stop (with the deadline): how a blocked thread is woken.
    pub(crate) fn on_stop(&self, hook: impl Fn(Instant) + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }
}

/// The threads of one component.
#[derive(Default)]
pub(crate) struct Threads {
    done: Vec<(String, oneshot::Receiver<()>)>,
}

impl Threads {
    /// Starts `body` on a thread named `name`.
    pub(crate) fn spawn(
        &mut self,
        name: impl Into<String>,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let name = name.into();
        let (tx, rx) = oneshot::channel();
        // The handle is dropped (the thread detached): its end is awaited through `rx`.
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                body();
                let _ = tx.send(());
            })?;
        self.done.push((name, rx));
        Ok(())
    }

    /// Awaits every thread until `deadline`; false if one panicked or was still running then.
    pub(crate) async fn join(self, deadline: Instant) -> bool {
        let mut clean = true;
        for (name, rx) in self.done {
            match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    tracing::error!(thread = name, "thread panicked");
                    clean = false;
                }
                Err(_) => {
                    tracing::warn!(
                        thread = name,
                        "thread still running at the shutdown deadline"
                    );
                    clean = false;
                }
            }
        }
        clean
    }
}

/// Runtime tasks that belong to no listener, drained at shutdown.
#[derive(Default)]
pub(crate) struct Tasks {
    set: Mutex<JoinSet<()>>,
}

impl Tasks {
    /// Spawns `task` on the current runtime, tracked.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        // Reap what is done, so the set holds only what runs.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// Spawns `task` on `runtime` (from a thread outside it), tracked.
    pub(crate) fn spawn_on(
        &self,
        runtime: &tokio::runtime::Handle,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn_on(task, runtime);
    }

    /// Awaits the tasks until `deadline`, then aborts what is left; false if any was left or
    /// panicked.
    pub(crate) async fn drain(&self, deadline: Instant) -> bool {
        let mut set = std::mem::take(&mut *self.set.lock().unwrap_or_else(|p| p.into_inner()));
        let mut clean = true;
        loop {
            match tokio::time::timeout_at(deadline.into(), set.join_next()).await {
                Ok(None) => return clean,
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => clean &= e.is_cancelled(),
                Err(_) => {
                    set.abort_all();
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn one_stop_wakes_threads_and_tasks_and_shutdown_awaits_them() {
        let stop = Arc::new(Stop::default());
        let (tx, rx) = std::sync::mpsc::channel::<Instant>();
        let tx = Mutex::new(tx);
        stop.on_stop(move |deadline| {
            let _ = tx.lock().unwrap().send(deadline);
        });
        let mut threads = Threads::default();
        threads
            .spawn("blocked", move || {
                // Blocked until the stop's hook wakes it.
                let _ = rx.recv();
            })
            .unwrap();
        let tasks = Tasks::default();
        let mut watch = stop.subscribe();
        tasks.spawn(async move {
            let _ = watch.changed().await;
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        stop.signal(deadline);
        stop.signal(deadline); // once only
        assert!(stop.is_set());
        assert!(threads.join(deadline).await);
        assert!(tasks.drain(deadline).await);
    }

    #[tokio::test]
    async fn what_outlives_the_deadline_is_reported() {
        let mut threads = Threads::default();
        threads
            .spawn("slow", || std::thread::sleep(Duration::from_millis(300)))
            .unwrap();
        assert!(
            !threads
                .join(Instant::now() + Duration::from_millis(20))
                .await
        );
        let tasks = Tasks::default();
        tasks.spawn(std::future::pending());
        assert!(
            !tasks
                .drain(Instant::now() + Duration::from_millis(20))
                .await
        );
    }
}
