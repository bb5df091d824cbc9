//! The `berth` binary: parse the command line, then either run the server or a client command.
//! No logic lives here (see `server.rs` for how the server is assembled).

mod gateway;
mod mqtt;
mod server;
mod tls;

use clap::Parser;

/// mimalloc: the gateway allocates and frees small objects on every request, from several
/// threads; measured in `bench/gateway_bench.py` (docs/benchmarks.md §4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    berth_cli::client::install_crypto_provider();
    let cli = berth_cli::Cli::parse();
    let ca_file = cli.ca_file.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            berth_cli::Command::Server(args) => match server::run(*args).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            },
            berth_cli::Command::Gateway(args) => match gateway::run(args, ca_file).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            },
            _ => berth_cli::run(cli).await,
        }
    });
    std::process::exit(code);
}
