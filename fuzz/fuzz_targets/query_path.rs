#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| splitdns_fuzz::query_path(data));
