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

/// `courser forget-cache` with no stack running in its home touches nothing and says so.
/// (What it does to a running stack is `stack::forget_cached_data`, tested in `chaos`.)
#[test]
fn forgetting_the_cache_of_a_stack_that_is_not_running_says_so() {
    let home = std::env::temp_dir().join(format!("courser-cli-forget-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_courser"))
        .arg("forget-cache")
        .env("COURSER_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "the stack is not running: nothing is cached\n"
    );
    let _ = std::fs::remove_dir_all(home);
}
