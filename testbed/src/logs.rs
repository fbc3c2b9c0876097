//! What the gateway logs in a test process, captured so a test can check what it writes — and
//! what it must never write (passwords, message content, forged lines).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

pub use tracing_subscriber::filter::LevelFilter;

/// Everything logged at `level` and above from now on, as plain text (no colours). The first
/// call installs the process's subscriber; later calls get the same buffer whatever level
/// they name, so a test binary should ask for one level throughout.
pub fn capture(level: LevelFilter) -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing_subscriber::util::SubscriberInitExt::init(subscriber);
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
