//! The identity formulas, pinned with values computed independently by Python's `uuid` and `hashlib`:
//!
//! ```python
//! import uuid, hashlib
//! ns = uuid.uuid5(uuid.NAMESPACE_URL, "https://danling.org")
//! e = uuid.uuid5(ns, experiment_id); r = uuid.uuid5(e, canonical)
//! u = uuid.uuid5(r, hashlib.sha256(diff).hexdigest())
//! ```

use std::path::PathBuf;
use std::process::Command;

use super::*;
use crate::config::{Config, Override, canonical_config};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const CANONICAL: &str = r#"{"optim":{"lr":0.01},"seed":1016}"#;

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

#[test]
fn namespace_is_uuid5_of_the_danling_url() {
    assert_eq!(namespace_danling(), uuid("e28dcb6d-bbc4-5a46-9718-1ba54a3f4633"));
}

#[test]
fn uuid_chain_matches_python_for_a_commit_and_a_diff() {
    let ids = Uuids::derive(SHA, CANONICAL, b"diff --git a/x b/x\n");
    assert_eq!(ids.experiment_uuid, uuid("8cfefe7d-acf7-5e46-ae6b-d4e4f9f71bd5"));
    assert_eq!(ids.run_uuid, uuid("240f5428-d96a-5f40-8740-72e63aad22f8"));
    assert_eq!(ids.uuid, uuid("ccea38d5-2903-5601-8c62-493250ba53d2"));
}

#[test]
fn uuid_chain_matches_python_outside_git() {
    let ids = Uuids::derive(NO_GIT_EXPERIMENT_ID, CANONICAL, b"");
    assert_eq!(ids.experiment_uuid, uuid("5525fde7-f0a1-56cc-ac15-9b27f9ac2f2c"));
    assert_eq!(ids.run_uuid, uuid("05612100-dcfa-5c04-9457-46a37a6e8b05"));
    assert_eq!(ids.uuid, uuid("aae71d9f-044d-56e0-b6b9-ce6b43841f00"));
}

fn config(overrides: &[(&str, &str)]) -> Config {
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect();
    Config::load(None, &overrides).unwrap()
}

#[test]
fn worked_example_of_the_default_config_outside_git() {
    let config = config(&[("optim.lr", "0.01")]);
    let canonical = canonical_config(&config.to_value());
    assert_eq!(canonical, WORKED_CANONICAL);
    let identity = Identity::from_git(&config, &GitState::default());
    assert_eq!(identity.experiment_id, "xxxxxxxxxxxxxxxx");
    assert_eq!(identity.run_uuid, uuid(WORKED_RUN_UUID));
    assert_eq!(identity.run_id, WORKED_RUN_UUID.replace('-', ""));
    assert_eq!(identity.uuid, uuid(WORKED_UUID));
    assert_eq!(identity.id, WORKED_ID);
    assert_eq!(identity.name, "DanLing-Run");
    assert_eq!(
        identity.dir,
        PathBuf::from(format!("experiments/DanLing-Run-{WORKED_ID}"))
    );
    assert_eq!(identity.checkpoint_dir, identity.dir.join("checkpoints"));
    assert!(!identity.git_dirty);
}

#[test]
fn id_takes_eight_characters_of_each_part_and_dirty_trees_change_only_uuid() {
    let config = config(&[]);
    let clean = Identity::from_git(
        &config,
        &GitState {
            head: Some(SHA.into()),
            diff: Vec::new(),
        },
    );
    let dirty = Identity::from_git(
        &config,
        &GitState {
            head: Some(SHA.into()),
            diff: b"x".to_vec(),
        },
    );
    assert_eq!(clean.experiment_id, SHA);
    assert!(clean.id.starts_with("01234567-"));
    assert_eq!(clean.run_id, dirty.run_id);
    assert_ne!(clean.uuid, dirty.uuid);
    assert!(dirty.git_dirty && !clean.git_dirty);
    let parts: Vec<&str> = clean.id.split('-').collect();
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.len() == 8));
}

#[test]
fn hashed_keys_change_run_id_and_ignored_keys_do_not() {
    let base = Identity::from_git(&config(&[]), &GitState::default());
    for (key, value) in [
        ("optim.lr", "0.5"),
        ("seed", "7"),
        ("epochs", "3"),
        ("pretrained", "a.safetensors"),
    ] {
        let changed = Identity::from_git(&config(&[(key, value)]), &GitState::default());
        assert_ne!(changed.run_id, base.run_id, "{key} is hashed");
    }
    for (key, value) in [
        ("log_interval", "5"),
        ("project_root", "elsewhere"),
        ("device", "wgpu"),
        ("resume", "true"),
        ("tensorboard", "true"),
        ("keep_latest_k", "3"),
        ("progress", "false"),
    ] {
        let same = Identity::from_git(&config(&[(key, value)]), &GitState::default());
        assert_eq!(same.run_id, base.run_id, "{key} is ignored");
        assert_eq!(same.uuid, base.uuid, "{key} is ignored");
    }
}

#[test]
fn configured_name_id_dir_and_checkpoint_dir_win() {
    let config = config(&[("name", "n"), ("id", "i"), ("dir", "d"), ("checkpoint_dir", "c")]);
    let identity = Identity::from_git(&config, &GitState::default());
    assert_eq!((identity.name.as_str(), identity.id.as_str()), ("n", "i"));
    assert_eq!(
        (identity.dir, identity.checkpoint_dir),
        (PathBuf::from("d"), PathBuf::from("c"))
    );
    let config = self::config(&[("experiment_name", "E"), ("run_name", "R"), ("project_root", "p")]);
    let identity = Identity::from_git(&config, &GitState::default());
    assert_eq!(identity.name, "E-R");
    assert_eq!(identity.dir, PathBuf::from(format!("p/E-R-{}", identity.id)));
}

#[test]
fn git_is_read_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        String::from_utf8(status.stdout).unwrap()
    };
    assert_eq!(
        GitState::discover(dir.path()).unwrap(),
        GitState::default(),
        "outside a repository"
    );
    git(&["init", "-q"]);
    assert_eq!(
        GitState::discover(dir.path()).unwrap().head,
        None,
        "before the first commit"
    );
    std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
    git(&["add", "a.txt"]);
    git(&["commit", "-q", "-m", "first"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_owned();
    let clean = GitState::discover(dir.path()).unwrap();
    assert_eq!(clean.head.as_deref(), Some(head.as_str()));
    assert!(clean.diff.is_empty());
    std::fs::write(dir.path().join("a.txt"), "two\n").unwrap();
    let dirty = GitState::discover(dir.path()).unwrap();
    assert!(String::from_utf8_lossy(&dirty.diff).contains("+two"));
}

/// The canonical form of the default config with `optim.lr: 0.01`. Adding a key to the config changes
/// it, and with it every run id: update it deliberately.
const WORKED_CANONICAL: &str = concat!(
    r#"{"accum_steps":1,"data":{"batch_size":32,"shuffle":true},"deterministic":false,"ema":null,"epo"#,
    r#"chs":10,"experiment_name":"DanLing","max_grad_norm":null,"max_grad_value":null,"nonfinite":"ski"#,
    r#"p","optim":{"betas":[0.9,0.999],"custom":null,"groups":[],"lr":0.01,"momentum":0,"type":"adamw"#,
    r#"","weight_decay":0},"patience":null,"precision":"f32","pretrained":null,"run_name":"Run","sched"#,
    r#"":{"cooldown_steps":null,"final_lr":null,"final_lr_ratio":null,"min_lr":null,"scaling":null,"ty"#,
    r#"pe":"none","warmup_steps":null},"score_mode":null,"score_name":"loss","score_split":null,"seed"#,
    r#"":1016,"steps":null}"#,
);
const WORKED_RUN_UUID: &str = "38e38e33-1d4c-5bd4-9d23-e7c1bceb3958";
const WORKED_UUID: &str = "0620c1e8-266d-58e0-9a72-47c15ee5d969";
const WORKED_ID: &str = "xxxxxxxx-38e38e33-0620c1e8";
