//! The `aide` binary: the CLI, the MCP server and a cluster node in one.

fn main() -> std::process::ExitCode {
    aide::cli::main()
}
