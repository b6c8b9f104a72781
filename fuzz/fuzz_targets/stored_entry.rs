//! Bytes as a stored log entry, record or snapshot (first byte: which); entries that decode are applied to a scratch store.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aide::fuzz::stored_entry(data);
});
