//! A program of its own built on `danling::cli`: its own config section, model and task, driven
//! in-process through `danling::cli::run`, read back through `danling::manage`, and listed by the
//! `danling` binary beside the built-in task's runs in one project root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use danling::Config;
use danling::cli::{App, BuildError, Parts};
use danling::config::{ConfigError, Sections};
use danling::manage::{Query, Run, scan};
use danling::runner::{StepOutput, Task};
use serde::{Deserialize, Serialize};

use common::{danling, stdout};

/// The program's one section: `line: {points, slope}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LineSections {
    line: LineConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LineConfig {
    points: usize,
    slope: f32,
}

impl Default for LineConfig {
    fn default() -> Self {
        Self {
            points: 64,
            slope: 2.0,
        }
    }
}

impl Sections for LineSections {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.line.points {
            0 => Err(ConfigError::invalid_value("line.points", 0, "an integer >= 1")),
            _ => Ok(()),
        }
    }
}

#[derive(Module, Debug)]
struct Line {
    linear: Linear,
}

struct Fit;

impl Task for Fit {
    type Model = Line;
    type Item = (f32, f32);
    type Batch = (Tensor<2>, Tensor<2>);

    fn collate(&self, items: Vec<(f32, f32)>, device: &Device) -> Self::Batch {
        let n = items.len();
        let (x, y): (Vec<f32>, Vec<f32>) = items.into_iter().unzip();
        (
            Tensor::from_data(TensorData::new(x, [n, 1]), device),
            Tensor::from_data(TensorData::new(y, [n, 1]), device),
        )
    }

    fn forward(&self, model: &Line, (x, y): &Self::Batch) -> StepOutput {
        StepOutput::regression(model.linear.forward(x.clone()), y.clone())
    }
}

/// The whole program: a name, its sections, and its parts from the config.
struct LineApp;

impl App for LineApp {
    const NAME: &'static str = "line";
    const ABOUT: &'static str = "line fits a straight line.";
    type Sections = LineSections;
    type Task = Fit;

    fn build(config: &Config<LineSections>, device: &Device) -> Result<Parts<Fit>, BuildError> {
        let line = &config.sections.line;
        let points: Vec<(f32, f32)> = (0..line.points)
            .map(|i| {
                let x = i as f32 / line.points as f32;
                (x, line.slope * x + 0.5)
            })
            .collect();
        let model = Line {
            linear: LinearConfig::new(1, 1).init(device),
        };
        Ok(Parts::new(Fit, model)
            .train("train", InMemDataset::new(points.clone()))
            .eval("val", InMemDataset::new(points)))
    }
}

fn line(args: &[&str]) -> ExitCode {
    danling::cli::run::<LineApp>(args.iter().map(OsString::from))
}

#[test]
fn a_program_of_its_own_gets_the_command_line_and_its_runs_are_listed_beside_others() {
    let dir = common::scratch();
    let root = dir.path().join("experiments");
    let root_arg = root.to_str().unwrap();
    let common = [
        "--project_root",
        root_arg,
        "--progress",
        "false",
        "--optim.lr",
        "0.1",
    ];

    // Its own keys are overrides, checked by its own `validate`; a typo is an error, exit 2.
    assert_eq!(
        line(&[&["train", "--line.points", "0"], &common[..]].concat()),
        ExitCode::from(2)
    );
    assert_eq!(
        line(&[&["train", "--line.pionts", "8"], &common[..]].concat()),
        ExitCode::from(2)
    );
    assert!(!root.exists(), "a refused run made a directory");
    assert_eq!(
        line(&[&["train", "--line.slope", "-1", "--epochs", "3"], &common[..]].concat()),
        ExitCode::SUCCESS
    );

    // Read back through the library: the run, its config section as written, its results.
    let runs: Vec<Run> = scan(&root).unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.status.as_str(), "finished");
    assert_eq!(run.config_value("line.slope"), Some(&serde_json::json!(-1.0)));
    assert_eq!(run.progress, Some((3, 3, "epoch")));
    assert!(run.best.is_some_and(|best| best.value.is_finite()));

    // The `danling` binary's own run in the same root, and `danling runs` lists both.
    let builtin = danling(dir.path(), &["train", "--epochs", "1", "--progress", "false"]);
    assert!(builtin.status.success());
    let listing = stdout(&danling(dir.path(), &["runs", root_arg, "--format", "json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert_eq!(rows.len(), 2, "{listing}");
    assert!(rows.iter().all(|row| row["status"] == "finished"), "{listing}");
    // And so does the library, for a filter on the program's own key.
    let all = scan(&root).unwrap();
    let query = Query {
        filter: Some(danling::manage::Filter::parse("line.slope < 0").unwrap()),
        ..Query::default()
    };
    let selected = danling::manage::runs::select(&all, &query);
    assert_eq!(selected.len(), 1);
    assert!(Path::new(&selected[0].0.dir).ends_with(run.dir.file_name().unwrap()));
}
