//! Config: defaults, files, overrides, precedence, user sections, and the messages of every error.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;
use crate::identity::{GitState, Identity};
use crate::workspace::runner_yaml;

fn overrides(pairs: &[(&str, &str)]) -> Vec<Override> {
    pairs
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(None, &overrides(pairs))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = load(&[]).unwrap();
    assert_eq!(config.seed, 1016);
    assert_eq!(
        (config.experiment_name.as_str(), config.run_name.as_str()),
        ("DanLing", "Run")
    );
    assert_eq!(config.project_root, Path::new("experiments"));
    assert_eq!(config.checkpoint_dir_name, "checkpoints");
    assert_eq!(config.score_name, "loss");
    assert_eq!(config.budget(), Budget::Epochs(DEFAULT_EPOCHS));
    assert_eq!(config.device, Device::Auto);
    assert_eq!(config.precision, Precision::F32);
    assert_eq!(config.accum_steps, 1);
    assert!(config.log && config.progress && !config.tensorboard && !config.resume.is_on());
}

#[test]
fn yaml_json_and_toml_files_give_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(
        dir.path(),
        "c.yaml",
        "seed: 3\nsteps: 20\noptim:\n  lr: 1.0e-2\n  betas: [0.8, 0.9]\n",
    );
    let json = write(
        dir.path(),
        "c.json",
        r#"{"seed": 3, "steps": 20, "optim": {"lr": 0.01, "betas": [0.8, 0.9]}}"#,
    );
    let toml = write(
        dir.path(),
        "c.toml",
        "seed = 3\nsteps = 20\n[optim]\nlr = 0.01\nbetas = [0.8, 0.9]\n",
    );
    let configs: Vec<Config> = [yaml, json, toml]
        .iter()
        .map(|p| Config::load(Some(p), &[]).unwrap())
        .collect();
    assert_eq!(configs[0], configs[1]);
    assert_eq!(configs[0], configs[2]);
    assert_eq!(configs[0].budget(), Budget::Steps(20));
    assert_eq!(configs[0].optim.betas, [0.8, 0.9]);
}

#[test]
fn precedence_is_defaults_then_file_then_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.yml",
        "seed: 3\noptim:\n  lr: 0.5\n  momentum: 0.5\n",
    );
    let config: Config = Config::load(Some(&file), &overrides(&[("optim.lr", "0.25")])).unwrap();
    assert_eq!(config.seed, 3, "file beats default");
    assert_eq!(config.optim.lr, 0.25, "override beats file");
    assert_eq!(
        config.optim.momentum, 0.5,
        "a sibling in the file survives an override"
    );
    assert_eq!(config.optim.weight_decay, 0.0, "default fills what neither sets");
}

#[test]
fn override_values_are_parsed_as_yaml() {
    let value = |text: &str| Override::parse("k", text).unwrap().value;
    assert_eq!(value("0.01"), json!(0.01));
    assert_eq!(value("3"), json!(3));
    assert_eq!(value("[64,32]"), json!([64, 32]));
    assert_eq!(value("{a: 1}"), json!({"a": 1}));
    assert_eq!(value("true"), json!(true));
    assert_eq!(value("yes"), json!("yes"), "YAML 1.1 booleans stay strings");
    assert_eq!(value("null"), json!(null));
    assert_eq!(value("abc"), json!("abc"));
    assert_eq!(Override::parse("a.b.c", "1").unwrap().path, ["a", "b", "c"]);
}

#[test]
fn string_keys_accept_numbers_as_text() {
    let config = load(&[("name", "2024"), ("run_name", "7"), ("experiment_name", "true")]).unwrap();
    assert_eq!(config.name.as_deref(), Some("2024"));
    assert_eq!(config.run_name, "7");
    assert_eq!(config.experiment_name, "true");
}

#[test]
fn a_runner_document_is_read_through_its_config_key() {
    let config = load(&[
        ("optim.lr", "0.03"),
        ("name", "'true'"),
        ("run_name", "'null'"),
        ("experiment_name", "'0x1F'"),
        ("steps", "5"),
    ])
    .unwrap();
    let identity = Identity::from_git(&config, &GitState::default());
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "runner.yaml",
        &runner_yaml(&config.to_value(), &identity).unwrap(),
    );
    let reread: Config = Config::load(Some(&path), &[]).unwrap();
    assert_eq!(reread, config);
    assert_eq!(Identity::from_git(&reread, &GitState::default()), identity);
}

#[test]
fn to_value_lists_every_key_including_nulls() {
    let value = load(&[]).unwrap().to_value();
    let map = value.as_object().unwrap();
    assert_eq!(map["dir"], json!(null));
    assert_eq!(map["sched"]["warmup_steps"], json!(null));
    assert_eq!(map.keys().next().map(String::as_str), Some("experiment_name"));
}

/// The user's own sections, as a library user would declare them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MySections {
    model: MyModel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MyModel {
    width: usize,
    depth: usize,
}

impl Default for MyModel {
    fn default() -> Self {
        Self { width: 8, depth: 2 }
    }
}

impl Sections for MySections {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.model.width == 0 {
            return Err(ConfigError::invalid_value("model.width", 0, "an integer >= 1"));
        }
        Ok(())
    }
}

#[test]
fn user_sections_are_typed_and_serialised_after_the_core_keys() {
    let config: Config<MySections> = Config::load(None, &overrides(&[("model.width", "32")])).unwrap();
    assert_eq!(config.sections.model, MyModel { width: 32, depth: 2 });
    let value = config.to_value();
    assert_eq!(value["model"], json!({"width": 32, "depth": 2}));
    assert_eq!(
        value.as_object().unwrap().keys().next_back().map(String::as_str),
        Some("model")
    );
    let err = Config::<MySections>::load(None, &overrides(&[("model.widht", "3")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown config key `model.widht` (did you mean `model.width`?)"
    );
    let err = Config::<MySections>::load(None, &overrides(&[("model.width", "0")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config key `model.width`: invalid value 0, expected an integer >= 1"
    );
}

#[test]
fn free_sections_take_any_key() {
    type Free = std::collections::BTreeMap<String, serde_json::Value>;
    let config: Config<Free> = Config::load(None, &overrides(&[("anything.goes", "[1]")])).unwrap();
    assert_eq!(config.sections["anything"], json!({"goes": [1]}));
}

/// Every kind of config error, one line each: the message a user sees.
#[test]
fn validation_messages() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("strict.yaml", "log: yes\n"),
        ("broken.yaml", "seed: [1, 2\n"),
        ("broken.json", "{\"seed\": }"),
        ("broken.toml", "seed = \n"),
        ("list.yaml", "- 1\n- 2\n"),
        ("duplicate.yaml", "seed: 1\nseed: 2\n"),
        ("config.ini", "seed = 1\n"),
    ];
    let mut lines = Vec::new();
    for (name, text) in files {
        let path = write(dir.path(), name, text);
        let err = Config::<NoSections>::load(Some(&path), &[]).unwrap_err();
        lines.push(format!(
            "{name}: {}",
            err.to_string().replace(&dir.path().display().to_string(), "DIR")
        ));
    }
    let missing = Config::<NoSections>::load(Some(Path::new("no/such/file.yaml")), &[]).unwrap_err();
    lines.push(format!("missing file: {missing}"));
    let cases: &[&[(&str, &str)]] = &[
        &[("epoch", "3")],
        &[("optim.lrr", "0.1")],
        &[("optim.lr", "fast")],
        &[("optim.lr", "0")],
        &[("optim.lr", "-1")],
        &[("epochs", "0")],
        &[("steps", "0")],
        &[("epochs", "3"), ("steps", "10")],
        &[("accum_steps", "0")],
        &[("seed", "-1")],
        &[("seed", "1.5")],
        &[("log", "yes")],
        &[("device", "tpu")],
        &[("precision", "fp8")],
        &[("nonfinite", "ignore")],
        &[("optim.type", "lamb")],
        &[("optim.betas", "[0.9]")],
        &[("optim.momentum", "1.5")],
        &[("sched.final_lr_ratio", "2")],
        &[("max_grad_norm", "0")],
        &[("name", "a/b")],
        &[("run_name", "..")],
        &[("experiment_name", r#""a\0b""#)],
        &[("optim", "3")],
        &[("optim.lr.x", "1")],
        &[("patience", "0")],
        &[("score_mode", "up")],
        &[("sched", "{type: cosine, warmup: 3}")],
    ];
    for pairs in cases {
        let args: Vec<String> = pairs.iter().map(|(k, v)| format!("--{k} {v}")).collect();
        let message = match load(pairs) {
            Ok(_) => "accepted".to_owned(),
            Err(err) => err.to_string(),
        };
        assert!(!message.contains('\n'));
        lines.push(format!("{}: {message}", args.join(" ")));
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn names_stay_one_path_component_inside_the_project() {
    let bad = [
        r#""a/b""#,
        r#""a\\b""#,
        r#""..""#,
        r#"".""#,
        r#""""#,
        r#""a\0b""#,
        r#""a\nb""#,
        r#""x\e[31m""#,
        r#""tab\there""#,
    ];
    for key in ["name", "id", "experiment_name", "run_name"] {
        for value in bad {
            let message = match load(&[(key, value)]) {
                Ok(_) => panic!("--{key} {value} was accepted"),
                Err(err) => err.to_string(),
            };
            assert!(
                message.starts_with(&format!("config key `{key}`: invalid value")) && !message.contains('\n'),
                "{message}"
            );
        }
        for good in ["a..b", "my run", "\u{fc}ber", "2024", ".hidden"] {
            assert!(load(&[(key, good)]).is_ok(), "--{key} {good}");
        }
    }
    // An explicit `dir` is the user's choice, wherever it points.
    let config = load(&[("dir", "../elsewhere/run")]).unwrap();
    assert_eq!(config.dir.as_deref(), Some(Path::new("../elsewhere/run")));
}

mod fuzz {
    //! Config parsing and overrides never panic, whatever the input. CI runs the default 256 cases;
    //! a deeper run: `PROPTEST_CASES=100000 cargo test --release -p danling --lib config::tests::fuzz`.

    use proptest::prelude::*;

    use super::super::load::parse_yaml_value;
    use super::*;

    /// YAML-ish text built from config-like pieces, so that many cases get past the parser.
    fn document() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("epochs"),
            Just("steps"),
            Just("seed"),
            Just("optim"),
            Just("lr"),
            Just("sched"),
            Just("type"),
            Just("device"),
            Just("log"),
            Just("name"),
            Just("betas"),
            Just("x"),
        ];
        let value = prop_oneof![
            prop::sample::select(vec![
                "1", "-3", "0.5", "1e400", "null", "yes", "[1, 2]", "{a: 1}", "cuda:9", "\"\"", "~", "[[[",
                "&a *a",
            ])
            .prop_map(str::to_owned),
            ".{0,8}",
        ];
        prop::collection::vec((key, value, 0usize..3), 0..8).prop_map(|entries| {
            entries
                .into_iter()
                .map(|(k, v, indent)| format!("{}{k}: {v}\n", "  ".repeat(indent)))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn documents_never_panic(text in prop_oneof![document(), ".{0,64}"]) {
            if let Ok(tree) = parse_yaml_value(&text) {
                let _ = Config::<NoSections>::from_value(tree);
            }
        }

        #[test]
        fn overrides_never_panic(key in "[a-z_.]{0,16}", value in ".{0,24}") {
            if let Ok(item) = Override::parse(&key, &value) {
                let _ = Config::<NoSections>::load(None, &[item]);
            }
        }
    }
}
