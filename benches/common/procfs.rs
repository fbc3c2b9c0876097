//! Memory figures of a process from `/proc/<pid>/status`, for the load tools.

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`); `pid` may be `self`. 0 when
/// the process or the field is gone.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
