//! Bytes as the request of one of the API's RPCs (first byte: which; second: its metadata),
//! handled by an in-process node; an internal error is a finding, like a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(Err(status)) = aide::fuzz::client_request(data) {
        assert!(!aide::fuzz::is_internal(&status), "{status:?}");
    }
});
