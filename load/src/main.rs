//! `courser-load`: see `courser_load::cli::Args` for the flags and load/README.md.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use courser_load::cli::Args;
use courser_load::report;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.execute() {
        Ok(done) => {
            // A closed stdout (e.g. `| head`) is no reason to fail a finished run.
            let _ = writeln!(
                std::io::stdout(),
                "{}  report     {} (result {})",
                report::summary_text(&done.result),
                done.html.display(),
                done.json.display()
            );
            if done.passed() {
                ExitCode::SUCCESS
            } else {
                // Distinct from 1 (could not run) so scripts can tell the two apart.
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("courser-load: {e}");
            ExitCode::FAILURE
        }
    }
}
