//! The markdown report: one table of ratios, then every measurement it came from.

use std::fmt::Write as _;
use std::process::Command;

use crate::Options;
use crate::e2e::Python;

/// Whether a row met its target.
pub enum Verdict {
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// The reference side could not run here.
    NotRun,
    /// A measurement without a target.
    Info,
}

impl From<bool> for Verdict {
    fn from(met: bool) -> Self {
        if met { Verdict::Met } else { Verdict::Missed }
    }
}

/// Rows and details, collected as the cases run.
pub struct Report {
    header: String,
    rows: Vec<[String; 6]>,
    details: Vec<String>,
    sections: Vec<String>,
}

impl Report {
    /// A report headed by what was measured where.
    pub fn new(options: &Options, python: &Python) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let git = Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(crate::root())
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let reference = match &python.danling {
            Some(versions) => format!("Python DanLing via `{}` ({versions})", python.program),
            None => format!("none: `{}` cannot import torch and danling", python.program),
        };
        let header = format!(
            "# Benchmarks\n\n\
             Written by `bench/run` (the `danling-bench` crate) on {}, commit `{git}`: {cpu}, {cores} \
             cores. Reference: {reference}. Each timed case ran {} times, interleaved with its \
             reference ((b) at least 25 times); the table shows medians (for (b), the median of each \
             runner run against the bare run beside it; the fastest run of each side for AUROC and \
             for checkpoint I/O, whose writes this machine sometimes stalls). Ratios are measured in \
             this one run on this one machine: compare them, not the absolute numbers, across machines.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            options.repeats,
        );
        Self {
            header,
            rows: Vec::new(),
            details: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// One table row.
    pub fn row(
        &mut self,
        case: &str,
        danling: String,
        reference: String,
        ratio: String,
        target: &str,
        verdict: Verdict,
    ) {
        let verdict = match verdict {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NotRun => "not run",
            Verdict::Info => "",
        };
        self.rows.push([
            case.to_owned(),
            danling,
            reference,
            ratio,
            target.to_owned(),
            verdict.to_owned(),
        ]);
    }

    /// A line of raw measurements under the table.
    pub fn detail(&mut self, line: String) {
        self.details.push(line);
    }

    /// A section of its own after the details (markdown, with its heading).
    pub fn section(&mut self, text: String) {
        self.sections.push(text);
    }

    /// The rows and details, for a parent process.
    pub fn to_json(&self) -> String {
        serde_json::json!({"rows": self.rows, "details": self.details, "sections": self.sections}).to_string()
    }

    /// Adds the rows and details a child process printed with [`Report::to_json`].
    pub fn extend_from_json(&mut self, json: &str) -> anyhow::Result<()> {
        let value: serde_json::Value = serde_json::from_str(json.trim())?;
        let rows: Vec<[String; 6]> = serde_json::from_value(value["rows"].clone())?;
        let details: Vec<String> = serde_json::from_value(value["details"].clone())?;
        self.rows.extend(rows);
        self.details.extend(details);
        if let Ok(sections) = serde_json::from_value::<Vec<String>>(value["sections"].clone()) {
            self.sections.extend(sections);
        }
        Ok(())
    }

    /// The whole document.
    pub fn markdown(&self) -> String {
        let mut out = self.header.clone();
        out.push_str("\n| case | danling | reference | ratio | target | |\n|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        if !self.details.is_empty() {
            out.push_str("\nEvery run:\n\n");
            for line in &self.details {
                let _ = writeln!(out, "- {line}");
            }
        }
        for section in &self.sections {
            let _ = write!(out, "\n{section}");
        }
        out
    }
}
