//! The `aide` binary: the CLI, the MCP server and a cluster node in one.

/// sled and tonic allocate many small, short-lived objects; mimalloc serves that pattern with
/// far less contention and fragmentation than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aide::cli::main()
}
