//! The one place with `unsafe`: six `unsafe` blocks, each with its SAFETY comment, all calls
//! into libc about ourselves or one socket: `madvise` of our code pages, `malloc_trim`,
//! `mallopt` (malloc settings), `gettid` + `setpriority`, `getifaddrs` / `freeifaddrs` (our
//! interface addresses), and `recvfrom` (a receive that can report "no source address").
//!
//! **Start-up code can leave memory** ([`release_code_pages`]). splitdns's resident memory is
//! mostly its own code, not data (about 3.9 of 4.7 MiB with the bench's 300 names). Start-up
//! (command line, YAML parser, logging and watcher setup) runs once but touches code all over the
//! binary, and on every page fault in a file mapping the kernel maps up to 64 KiB around the
//! faulting page, so most of the binary stays resident for good although the query loop uses a
//! small part of it. Once serving, we drop our code pages from this process's page tables
//! (`MADV_DONTNEED`); the pages stay in the page cache, and the ones still used come back on
//! their first use as minor faults, a one-time cost of microseconds. Measured with the static
//! release binary and the bench harness's 300 names: 4.7 -> 3.4 MiB idle (README,
//! Performance). Nothing here changes behaviour: the code mappings are read-only and unmodified,
//! so a dropped page reads back identical; advice that fails is ignored.
//!
//! **The reload thread yields to the query path** ([`background_priority`]). A sidecar usually
//! has one core or less; a 100,000-name reload takes a few hundred milliseconds of CPU, and at
//! normal priority it takes them from the query workers (measured: local-answer throughput fell
//! by a third while the mapping was rewritten every second). At nice 19 the reload only uses CPU
//! the workers leave over.
#![allow(unsafe_code)]

use std::io::BufRead;

/// Drops the resident pages of our executable's clean read-only mappings (code `r-xp`, and the
/// `r--p` segment of headers, relocation tables and constants, which start-up reads once); see
/// the module doc. A mapping with any anonymous page, that is a page copied on write (the
/// relocated `.data.rel.ro`, made read-only after relocation), is left alone: dropping it would
/// lose the relocations. (Not `Private_Dirty`: that also counts file pages not yet written back
/// to disk, as in a binary fresh from the compiler.)
pub(crate) fn release_code_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = std::fs::File::open("/proc/self/smaps") else {
        return;
    };
    // (start, end, candidate): the current mapping, and whether it is one of ours, read-only
    // and private.
    let mut current: Option<(usize, usize)> = None;
    let mut clean: Vec<(usize, usize)> = Vec::new();
    for line in std::io::BufReader::new(smaps).lines().map_while(Result::ok) {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // "start-end perms offset dev inode path"
            let perms = fields.next();
            let ours = fields.nth(3).map(std::path::Path::new) == Some(exe.as_path());
            current = (ours && matches!(perms, Some("r-xp" | "r--p"))).then_some((start, end));
            continue;
        }
        if first == "Anonymous:"
            && let Some(range) = current.take()
            && fields.next() == Some("0")
        {
            clean.push(range);
        }
    }
    for (start, end) in clean {
        // SAFETY: `start..end` is one whole read-only private mapping of our own executable
        // file, page-aligned, as listed by the kernel in /proc/self/smaps, with no anonymous
        // (copied-on-write) page: every resident page is a page of the file's page cache, so
        // MADV_DONTNEED only removes page-table entries and the next access faults the identical
        // bytes back in. No Rust object lives in this range, and no reference is invalidated.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Returns freed heap memory to the kernel: after start-up (YAML parsing, command line, runtime
/// set-up) and after a burst ([`trim_if_asked`]). glibc keeps freed chunks resident until asked
/// (`malloc_trim` also releases free pages in the middle of the heap, not only at its top).
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` only walks glibc's own free lists under its arena locks; it has no
    // preconditions and invalidates no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Set when a burst's buffers were freed: the prober thread, which wakes every probe interval
/// anyway, then trims the heap ([`trim_if_asked`]). glibc keeps freed chunks resident, and the
/// buffers of a burst lie between longer-lived allocations, so they are not at the heap's top
/// where free() would give them back: without a trim, a flood of large queries or of TCP
/// connections left 3-5 MiB resident for good (benches/security). Trimming only when asked keeps
/// it off the hot path and out of an idle sidecar's wake-ups.
static TRIM_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks for a heap trim (cheap: one relaxed store; called where a burst's buffers are freed and
/// where a TCP connection ends).
pub(crate) fn ask_trim() {
    TRIM_ASKED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Trims the heap if asked since the last call ([`ask_trim`]).
pub(crate) fn trim_if_asked() {
    if TRIM_ASKED.swap(false, std::sync::atomic::Ordering::Relaxed) {
        trim_heap();
    }
}

/// Allocator settings for a small resident set (glibc):
///
/// - one malloc arena for the whole process: each thread that allocates otherwise gets an arena
///   of its own, with ~70 KiB resident each for the few start-up allocations it makes. The query
///   path does not allocate, so the threads never contend for it. (The image also sets
///   `GLIBC_TUNABLES=glibc.malloc.arena_max=2`; this covers every other way of running it.)
/// - a fixed mmap threshold of 64 KiB: each worker's two 64 KiB receive buffers are then mapped
///   on their own, and only the pages a datagram reaches become resident (from the heap, calloc
///   would clear, and so touch, all of them). Fixed, because glibc otherwise raises the threshold
///   when start-up frees a large block.
pub(crate) fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only reads its two integer arguments and adjusts allocator settings; it
    // is called at start-up, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// Lowers the calling thread's scheduling priority to nice 19 (Linux: `setpriority` with
/// `PRIO_PROCESS` applies to a single thread when given its thread id).
pub(crate) fn background_priority() {
    // SAFETY: `gettid` has no preconditions; `setpriority` only reads its integer arguments and
    // changes the scheduling priority of the calling thread, which owns no Rust invariant.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// `recvfrom(2)` on a UDP socket: the datagram's length and its source, `None` when the kernel
/// gave no address. That is what a receive returns after [`stop_receiving`]: the way a worker
/// blocked in it is woken at shutdown without any timeout ticking while idle. (std's
/// `UdpSocket::recv_from` cannot be used for this: it asserts on the empty address and aborts.)
pub(crate) fn recv_from(
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<std::net::SocketAddr>)> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // SAFETY: `try_init` hands us zeroed address storage and its size; `recvfrom` writes at
    // most that many address bytes there and updates the length, and at most `buf.len()` bytes
    // into `buf`, a valid writable region for the duration of the call. The fd is owned by
    // `socket`, alive here.
    let (n, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let got = libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                storage.cast(),
                len,
            );
            if got < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(got as usize)
            }
        })
    }?;
    Ok((n, addr.as_socket()))
}

/// Wakes every thread blocked in [`recv_from`] on `socket` (they get a zero-length read with no
/// address), and makes later receives return at once. Sends still work.
pub(crate) fn stop_receiving(socket: &std::net::UdpSocket) {
    // Linux returns ENOTCONN for an unconnected UDP socket but marks it shut down for reading
    // and wakes its readers all the same (inet_shutdown).
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Read);
}

/// The addresses of this network namespace's interfaces (`getifaddrs(3)`): in a pod, the pod's
/// own addresses, which its containers query from besides loopback. Empty if the call fails.
pub(crate) fn own_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `getifaddrs` writes a pointer to a list it allocates into `list` (or fails and
    // writes nothing); we only read the list, each node's `ifa_addr` only after checking it is
    // non-null and of the family whose struct we read it as, and free it once with
    // `freeifaddrs`. Nothing of it is kept: addresses are copied out as values.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut node = list;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                        out.push(std::net::IpAddr::V4(ip));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                            sin6.sin6_addr.s6_addr,
                        )));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}
