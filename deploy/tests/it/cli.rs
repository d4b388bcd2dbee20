//! The `courser` command line itself.

use std::process::{Command, Stdio};

/// A reader that stops early (`courser status | head -3`): the command ends quietly,
/// as any Unix tool does, never with a panic or an error about the pipe.
#[test]
fn printing_into_a_closed_pipe_ends_quietly_without_a_panic() {
    let home = std::env::temp_dir().join(format!("courser-cli-{}", std::process::id()));
    for command in ["env", "status"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_courser"))
            .arg(command)
            .env("COURSER_HOME", &home)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "courser {command}: {stderr}");
        // `status` exits 1 when something is down (nothing runs in this home).
        assert!(
            out.status.code().is_some(),
            "courser {command} ended by a signal: {:?}",
            out.status
        );
    }
    let _ = std::fs::remove_dir_all(home);
}
