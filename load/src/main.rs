//! `courser-load`: see `courser_load::cli::Args` for the flags and load/README.md.

use std::process::ExitCode;

use clap::Parser as _;
use courser_load::cli::Args;
use courser_load::report;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.execute() {
        Ok(done) => {
            print!("{}", report::summary_text(&done.result));
            println!(
                "  report     {} (result {})",
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
