//! `keep_latest_k` as a decision: which history checkpoints go, from the names in a checkpoint
//! directory alone. Deciding is pure and tested without a disk; the runner's writer applies it.

use crate::workspace::files::CHECKPOINT_EXTENSION;

/// The prefixes of the history checkpoints retention applies to: `epoch-{N}` and `step-{N}`.
pub const HISTORY: [&str; 2] = ["epoch-", "step-"];

/// Of the file names in a checkpoint directory, those to delete so that at most `keep` of each
/// history (`epoch-N`, `step-N`) remain, the ones with the largest `N`. Nothing else is ever named:
/// not `latest`, not `best`, not a file of another shape. All of them stay when `keep` is `None`.
pub fn to_delete<'a>(names: impl IntoIterator<Item = &'a str>, keep: Option<u64>) -> Vec<&'a str> {
    let Some(keep) = keep else {
        return Vec::new();
    };
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    let names: Vec<&str> = names.into_iter().collect();
    let mut doomed = Vec::new();
    for prefix in HISTORY {
        let mut history: Vec<(u64, &str)> = names
            .iter()
            .filter_map(|&name| Some((history_number(name, prefix)?, name)))
            .collect();
        history.sort_unstable();
        let excess = history.len().saturating_sub(keep);
        doomed.extend(history.into_iter().take(excess).map(|(_, name)| name));
    }
    doomed
}

/// `N` of `{prefix}{N}.safetensors`.
fn history_number(name: &str, prefix: &str) -> Option<u64> {
    let number = name
        .strip_prefix(prefix)?
        .strip_suffix(CHECKPOINT_EXTENSION)?
        .strip_suffix('.')?;
    // Only the canonical spelling the runner writes: no sign, no leading zeros.
    let n: u64 = number.parse().ok()?;
    (n.to_string() == number).then_some(n)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::to_delete;

    #[test]
    fn the_oldest_history_goes_and_nothing_else() {
        let names = [
            "latest.safetensors",
            "best.safetensors",
            "epoch-10.safetensors",
            "epoch-9.safetensors",
            "epoch-2.safetensors",
            "step-3.safetensors",
            "step-30.safetensors",
            "step-007.safetensors",
            "epoch-1.json",
            ".epoch-1.safetensors.tmp-1-2",
        ];
        let mut doomed = to_delete(names, Some(1));
        doomed.sort_unstable();
        assert_eq!(
            doomed,
            ["epoch-2.safetensors", "epoch-9.safetensors", "step-3.safetensors"]
        );
        assert!(to_delete(names, None).is_empty());
        assert_eq!(to_delete(names, Some(0)).len(), 5);
    }

    proptest! {
        #[test]
        fn retention_keeps_the_newest_k_of_each_history(
            epochs in proptest::collection::btree_set(0u64..200, 0..20),
            steps in proptest::collection::btree_set(0u64..5000, 0..20),
            keep in proptest::option::of(0u64..25),
        ) {
            let mut names: Vec<String> = vec!["latest.safetensors".into(), "best.safetensors".into()];
            names.extend(epochs.iter().map(|n| format!("epoch-{n}.safetensors")));
            names.extend(steps.iter().map(|n| format!("step-{n}.safetensors")));
            let doomed = to_delete(names.iter().map(String::as_str), keep);
            let kept: Vec<&String> = names.iter().filter(|n| !doomed.contains(&n.as_str())).collect();
            prop_assert!(kept.iter().any(|n| *n == "latest.safetensors"));
            prop_assert!(kept.iter().any(|n| *n == "best.safetensors"));
            for (prefix, set) in [("epoch-", &epochs), ("step-", &steps)] {
                let expected: Vec<String> = match keep {
                    None => set.iter().map(|n| format!("{prefix}{n}.safetensors")).collect(),
                    Some(k) => set
                        .iter()
                        .rev()
                        .take(k as usize)
                        .rev()
                        .map(|n| format!("{prefix}{n}.safetensors"))
                        .collect(),
                };
                let got: Vec<String> = names
                    .iter()
                    .filter(|n| n.starts_with(prefix) && !doomed.contains(&n.as_str()))
                    .cloned()
                    .collect();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
