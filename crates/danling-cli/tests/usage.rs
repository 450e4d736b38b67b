//! The command line itself: completions, arguments that are not UTF-8, the usage errors clap finds,
//! and the usage lines the README shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::Path;
use std::process::Command;

use common::{danling, scratch, stderr, stdout};

#[test]
fn completions_name_every_command_and_its_flags() {
    let dir = scratch();
    for shell in ["bash", "zsh", "fish"] {
        let output = danling(dir.path(), &["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stderr(&output).is_empty(), "{shell}");
        let script = stdout(&output);
        for command in ["train", "evaluate", "infer", "config", "completions"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
        for flag in ["overwrite", "split", "output", "json", "checkpoint"] {
            // fish writes a long flag `-l name`, bash and zsh `--name`.
            let word = if shell == "fish" {
                format!("-l {flag}")
            } else {
                format!("--{flag}")
            };
            assert!(script.contains(&word), "{shell} completions lack {word}");
        }
        if shell == "bash" {
            assert_bash_syntax(&script);
        }
    }
}

/// `bash -n` accepts `script`, where bash is installed.
fn assert_bash_syntax(script: &str) {
    use std::io::Write as _;
    let Ok(mut bash) = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    bash.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(bash.wait().unwrap().success(), "bash rejects the script");
}

#[test]
fn completions_of_an_unknown_shell_exit_2_with_one_line() {
    let dir = scratch();
    for args in [
        &["completions", "tcsh"][..],
        &["completions"],
        &["completions", "bash", "zsh"],
    ] {
        let output = danling(dir.path(), args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("danling: error: "), "{args:?}: {err}");
        assert!(err.contains("SHELL"), "{args:?}: {err}");
    }
}

#[test]
fn an_argument_that_is_not_utf8_exits_2_naming_it() {
    let dir = scratch();
    for (args, position) in [(&["config", "--name"][..], 3), (&[][..], 1), (&["train"][..], 2)] {
        let output = Command::new(common::bin())
            .args(args)
            .arg(OsString::from_vec(b"caf\xe9".to_vec()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(stdout(&output).is_empty());
        assert_eq!(
            err,
            format!("danling: error: argument {position} is not valid UTF-8: \"caf\\xE9\"\n")
        );
    }
}

#[test]
fn usage_errors_found_by_clap_are_one_line_naming_the_argument() {
    let dir = scratch();
    let cases: &[(&[&str], &str)] = &[
        (&["trian"], "did you mean `train`?"),
        (&["--seed", "3", "config"], "`--seed`"),
        (&["config", "--json=yes"], "`--json` takes no value"),
        (&["infer", "--split"], "`--split` needs a value"),
        (
            &["infer", "--split", "--output", "x.csv"],
            "`--split` needs a value",
        ),
        (
            &["infer", "--split", "a", "--split", "b", "--output", "x.csv"],
            "`--split`",
        ),
        (
            &["infer", "--checkpoint", "x", "--split", "val"],
            "--output FILE.csv",
        ),
        (&["config", "--help=1"], "`--help`"),
        (&["config", "--"], "`--`"),
    ];
    for (args, needle) in cases {
        let output = danling(dir.path(), args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(stdout(&output).is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("danling: error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err} lacks {needle}");
    }
}

#[test]
fn help_wins_over_bad_overrides_and_goes_to_stdout() {
    let dir = scratch();
    for args in [
        &["config", "--optim.lr", ".nan", "--help"][..],
        &["evaluate", "--resume", "-h"],
        &["help", "infer"],
    ] {
        let output = danling(dir.path(), args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(stderr(&output).is_empty(), "{args:?}");
        assert!(stdout(&output).contains("Usage: danling "), "{args:?}");
    }
}

/// The README's usage lines are the ones `--help` prints.
#[test]
fn the_readme_shows_the_usage_lines_of_the_help() {
    let dir = scratch();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let normalise = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown: Vec<String> = readme.lines().map(normalise).collect();
    for command in ["train", "evaluate", "infer", "config"] {
        let help = stdout(&danling(dir.path(), &[command, "--help"]));
        let usage = help
            .lines()
            .find_map(|line| line.strip_prefix("Usage: "))
            .unwrap();
        assert!(shown.contains(&normalise(usage)), "README lacks `{usage}`");
    }
}
