//! Keeping the Dovecot master process on a leash.
//!
//! Dovecot runs in the foreground (`dovecot -F`) as our child, in its own process group, and
//! is tied to us three ways, so it never outlives the program that started it:
//!
//! 1. [`Supervisor::stop`] (also on drop): SIGTERM to the master, which stops its own
//!    children, then wait (bounded); if it hangs, SIGKILL to the whole process group.
//! 2. The child is spawned from a *keeper thread* that lives exactly as long as the
//!    supervisor, with `PR_SET_PDEATHSIG = SIGTERM`: Linux signals the child when the thread
//!    that forked it ends. That covers the cases where no destructor runs: a value in a
//!    `static`, a panic that aborts, the test binary killed by Ctrl-C or SIGKILL. (It has to
//!    be a dedicated thread: the death signal follows the *thread*, and a test's thread ends
//!    long before the test binary does.)
//! 3. [`stop_at_exit`] registers a value in a `static` to be stopped by an `atexit` hook, so
//!    a test binary also waits for Dovecot and removes its directory when it exits normally.
//!
//! The few libc calls are declared here directly (std already links libc) rather than adding
//! a crate for four functions.

use std::process::{Child, Command};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod sys {
    use std::ffi::c_int;

    pub const SIGTERM: c_int = 15;
    pub const SIGKILL: c_int = 9;
    #[cfg(target_os = "linux")]
    pub const PR_SET_PDEATHSIG: c_int = 1;

    unsafe extern "C" {
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn geteuid() -> u32;
        pub fn getegid() -> u32;
        pub fn getppid() -> c_int;
        pub fn atexit(cb: extern "C" fn()) -> c_int;
        #[cfg(target_os = "linux")]
        pub fn prctl(option: c_int, ...) -> c_int;
    }
}

/// How long Dovecot gets to shut down after SIGTERM (it usually needs about a second).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The effective user id of this process (0 when running as root).
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { sys::geteuid() }
}

/// The effective group id of this process.
pub(crate) fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { sys::getegid() }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill only sends a signal; a stale pid gives ESRCH, which we ignore.
    unsafe {
        sys::kill(pid, sig);
    }
}

/// Owns a child process through its keeper thread.
pub(crate) struct Supervisor {
    pid: u32,
    /// Why the child ended on its own, if it did.
    exited: Arc<Mutex<Option<String>>>,
    /// Dropping or sending on `stop` makes the keeper terminate the child; `None` once stopped.
    keeper: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Supervisor {
    /// Spawns `cmd` from a new keeper thread, in its own process group, with the parent-death
    /// signal set.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Supervisor> {
        use std::os::unix::process::CommandExt;

        // Its own process group: Ctrl-C in a terminal goes to us, not straight to Dovecot
        // (we stop it in order), and a hung Dovecot can be killed with all its children.
        cmd.process_group(0);
        let parent = std::process::id() as i32;
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (prctl, getppid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                #[cfg(target_os = "linux")]
                if sys::prctl(sys::PR_SET_PDEATHSIG, sys::SIGTERM as std::ffi::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // If we died before prctl took effect, the signal will never come: give up.
                if sys::getppid() != parent {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }

        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let exited = Arc::new(Mutex::new(None));
        let exited_in_keeper = Arc::clone(&exited);
        let thread = std::thread::Builder::new()
            .name("dovecot-keeper".into())
            .spawn(move || {
                let child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = spawned_tx.send(Err(e));
                        return;
                    }
                };
                let _ = spawned_tx.send(Ok(child.id()));
                keep(child, &stop_rx, &exited_in_keeper);
            })?;
        let pid = spawned_rx
            .recv()
            .map_err(|_| std::io::Error::other("keeper thread died"))??;
        Ok(Supervisor {
            pid,
            exited,
            keeper: Mutex::new(Some((stop_tx, thread))),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(reason)` if the child has ended without being asked to.
    pub fn exited(&self) -> Option<String> {
        lock(&self.exited).clone()
    }

    /// Terminates the child and waits for it (bounded by [`STOP_GRACE`] plus a SIGKILL).
    /// Idempotent; safe to call from any thread, including an `atexit` hook.
    pub fn stop(&self) {
        let Some((stop, thread)) = lock(&self.keeper).take() else {
            return;
        };
        let _ = stop.send(());
        let _ = thread.join();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The keeper thread's loop: watch the child, and end it when asked (or when the supervisor
/// is dropped, which disconnects the channel).
fn keep(mut child: Child, stop: &mpsc::Receiver<()>, exited: &Mutex<Option<String>>) {
    loop {
        match stop.recv_timeout(Duration::from_millis(50)) {
            Err(RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    *lock(exited) = Some(status.to_string());
                    // Nothing left to supervise; wait to be told to stop (or dropped).
                    let _ = stop.recv();
                    return;
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                terminate(&mut child);
                return;
            }
        }
    }
}

fn terminate(child: &mut Child) {
    let pid = child.id() as i32;
    signal(pid, sys::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still alive (so its pid and group id cannot have been reused): kill the whole group.
    signal(-pid, sys::SIGKILL);
    let _ = child.wait();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Something to stop when the process exits.
pub(crate) trait StopAtExit: Sync {
    fn stop_now(&self);
}

static AT_EXIT: Mutex<Vec<&'static dyn StopAtExit>> = Mutex::new(Vec::new());

/// Stops `item` from an `atexit` hook when the process exits normally (the end of `main`, or
/// `std::process::exit`, which is how the test harness ends).
pub(crate) fn stop_at_exit(item: &'static dyn StopAtExit) {
    static REGISTER: Once = Once::new();
    lock(&AT_EXIT).push(item);
    REGISTER.call_once(|| {
        // SAFETY: registering a plain function pointer; the hook catches panics so none
        // unwinds into libc.
        unsafe {
            sys::atexit(run_at_exit);
        }
    });
}

extern "C" fn run_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let items: Vec<_> = lock(&AT_EXIT).drain(..).collect();
        for item in items {
            item.stop_now();
        }
    });
}
