//! `ocrnet-edge`: a thin command line over the `ocrnet_edge` library.
//!
//! Exit codes: 0 success, 1 error (the message names the file, node or field), 2 bad command line, 3 a
//! report whose regression gate failed.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    ocrnet_edge::runtime::memory::use_one_malloc_arena();
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::error_message(&err));
            ExitCode::from(1)
        }
    }
}
