//! What a device and this process use, for `DeviceStatsMonitor`: the process's resident
//! memory and CPU time, the machine's memory and swap (Linux's `/proc`), and a CUDA device's
//! memory (through candle's `cudarc`).

use candle_core::Device;

/// One named statistic (the name as logged after the monitor's prefix).
pub(crate) type Stat = (&'static str, f64);

/// The CPU statistics: `process_rss_mb` (resident memory, `/proc/self/status`'s `VmRSS`),
/// `process_cpu_time_s` (user + system time of every thread, `getrusage`), and Lightning's
/// `cpu_vm_percent` and `cpu_swap_percent` (the machine's memory and swap in use,
/// `/proc/meminfo`). A source a system lacks is left out; [`cpu_missing`] names them once.
pub(crate) fn cpu() -> Vec<Stat> {
    let mut out = Vec::with_capacity(4);
    if let Some(kb) = read_kb("/proc/self/status", "VmRSS:") {
        out.push(("process_rss_mb", kb / 1024.0));
    }
    if let Some(s) = cpu_time_s() {
        out.push(("process_cpu_time_s", s));
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let field = |k: &str| kb_field(&meminfo, k);
        if let (Some(total), Some(avail)) = (field("MemTotal:"), field("MemAvailable:")) {
            if total > 0.0 {
                out.push(("cpu_vm_percent", 100.0 * (total - avail) / total));
            }
        }
        if let (Some(total), Some(free)) = (field("SwapTotal:"), field("SwapFree:")) {
            // psutil reports 0% without swap
            out.push(("cpu_swap_percent", if total > 0.0 { 100.0 * (total - free) / total } else { 0.0 }));
        }
    }
    out
}

/// The CPU statistics this system cannot give (empty on Linux).
pub(crate) fn cpu_missing() -> Vec<&'static str> {
    let have: Vec<&str> = cpu().into_iter().map(|(k, _)| k).collect();
    ["process_rss_mb", "process_cpu_time_s", "cpu_vm_percent", "cpu_swap_percent"]
        .into_iter()
        .filter(|k| !have.contains(k))
        .collect()
}

fn read_kb(path: &str, key: &str) -> Option<f64> {
    kb_field(&std::fs::read_to_string(path).ok()?, key)
}

/// `Key:   123 kB` → 123.
fn kb_field(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(unix)]
fn cpu_time_s() -> Option<f64> {
    // SAFETY: `getrusage` writes only into the zeroed struct we pass; RUSAGE_SELF is valid.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0).then_some(u)?
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

#[cfg(not(unix))]
fn cpu_time_s() -> Option<f64> {
    None
}

/// The device's memory: `cuda_memory_used_mb`, `cuda_memory_free_mb`, `cuda_memory_total_mb`
/// (the whole GPU's, as the driver reports it, other processes included: candle has no
/// caching allocator to ask, as torch's `memory_stats` does). `None` for a CPU device; an
/// error from the driver is `Err`.
pub(crate) fn device(device: &Device) -> crate::Result<Option<Vec<Stat>>> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        return cuda_memory(cuda).map(Some);
    }
    let _ = device;
    Ok(None)
}

#[cfg(feature = "cuda")]
fn cuda_memory(cuda: &candle_core::CudaDevice) -> crate::Result<Vec<Stat>> {
    let (free, total) = cuda
        .cuda_stream()
        .context()
        .mem_get_info()
        .map_err(|e| crate::Error::Device(format!("cannot read the CUDA device's memory: {e}")))?;
    let mb = |b: usize| b as f64 / (1024.0 * 1024.0);
    Ok(vec![
        ("cuda_memory_used_mb", mb(total.saturating_sub(free))),
        ("cuda_memory_free_mb", mb(free)),
        ("cuda_memory_total_mb", mb(total)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_fields_parse() {
        let text = "Name:\tx\nVmRSS:\t   2048 kB\nVmSwap:\t0 kB\n";
        assert_eq!(kb_field(text, "VmRSS:"), Some(2048.0));
        assert_eq!(kb_field(text, "VmHWM:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_gives_every_cpu_statistic() {
        assert!(cpu_missing().is_empty(), "{:?}", cpu_missing());
        assert_eq!(device(&Device::Cpu).unwrap(), None);
    }
}
