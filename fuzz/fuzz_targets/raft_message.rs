//! Bytes as a node-to-node Raft message (first byte: which), decoded and encoded again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aide::fuzz::raft_message(data);
});
