//! Asynchronous successive halving (ASHA; Li et al., 2020): rungs at `min · ηᵏ` epochs up to the
//! budget. A trial trains to its next rung and pauses with its checkpoint; whenever a job slot is
//! free, the best paused trial among the top `1/η` of the highest rung that has one is promoted
//! (resumed to the next rung), and only when none is does a new trial start. The trials left paused
//! when the sweep ends are pruned at their rung.
//!
//! Promotion is decided from the scores at each rung alone, ordered by (score, trial number), so it
//! is a function of the results and the order they arrived in.

/// The rungs of a sweep: where trials pause, in epochs (or steps, with a step budget).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ladder {
    /// The rungs, ascending; the last is the whole budget.
    pub rungs: Vec<u64>,
    /// η: the top `1/η` of a rung go on.
    pub reduction: u64,
}

impl Ladder {
    /// Rungs at `min · reduction^k` below `max`, then `max`. An error names the flag at fault.
    pub fn new(min: u64, max: u64, reduction: u64) -> Result<Self, String> {
        if reduction < 2 {
            return Err(format!(
                "--reduction {reduction}: the top 1/η go on, so η must be 2 or more"
            ));
        }
        if min == 0 {
            return Err("--min-epochs 0: the first rung needs at least one epoch".to_owned());
        }
        if min >= max {
            return Err(format!(
                "--min-epochs {min} is not below the budget of {max}: there is nothing to halve"
            ));
        }
        let mut rungs = Vec::new();
        let mut at = min;
        while at < max {
            rungs.push(at);
            at = at.saturating_mul(reduction);
        }
        rungs.push(max);
        Ok(Self { rungs, reduction })
    }

    /// The last rung's index.
    pub fn top(&self) -> usize {
        self.rungs.len() - 1
    }
}

/// A trial as promotion sees it.
#[derive(Debug, Clone)]
pub struct Climber {
    /// Its score at each rung it reached, oriented so that lower is better.
    pub scores: Vec<f64>,
    /// Whether it waits at its highest rung for a promotion (not running, not ended).
    pub paused: bool,
}

/// The next promotion, as (trial, rung it goes to): the best paused trial within the top `1/η` of
/// the highest rung that has one.
pub fn promotion(ladder: &Ladder, climbers: &[Climber]) -> Option<(usize, usize)> {
    for rung in (0..ladder.top()).rev() {
        let mut at: Vec<(usize, f64)> = climbers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.scores.get(rung).map(|s| (i, *s)))
            .collect();
        at.sort_by(|a, b| oriented(a.1).total_cmp(&oriented(b.1)).then(a.0.cmp(&b.0)));
        let top = at.len() / ladder.reduction as usize;
        if let Some(&(i, _)) = at[..top]
            .iter()
            .find(|(i, _)| climbers[*i].paused && climbers[*i].scores.len() == rung + 1)
        {
            return Some((i, rung + 1));
        }
    }
    None
}

/// Where a trial's score at `rung` ranks among the trials that reached it: (1-based rank, count).
pub fn rank(climbers: &[Climber], trial: usize, rung: usize) -> (usize, usize) {
    let Some(mine) = climbers[trial].scores.get(rung).copied() else {
        return (0, 0);
    };
    let at: Vec<(usize, f64)> = climbers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.scores.get(rung).map(|s| (i, *s)))
        .collect();
    let better = at
        .iter()
        .filter(|(i, s)| oriented(*s) < oriented(mine) || (oriented(*s) == oriented(mine) && *i < trial))
        .count();
    (better + 1, at.len())
}

/// NaN ranks last.
fn oriented(score: f64) -> f64 {
    if score.is_nan() { f64::INFINITY } else { score }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_the_reduction_and_end_at_the_budget() {
        assert_eq!(Ladder::new(1, 9, 3).unwrap().rungs, [1, 3, 9]);
        assert_eq!(Ladder::new(1, 10, 3).unwrap().rungs, [1, 3, 9, 10]);
        assert_eq!(Ladder::new(2, 16, 2).unwrap().rungs, [2, 4, 8, 16]);
        assert!(Ladder::new(3, 3, 3).unwrap_err().contains("--min-epochs 3"));
        assert!(Ladder::new(1, 9, 1).unwrap_err().contains("--reduction 1"));
        assert!(Ladder::new(0, 9, 3).unwrap_err().contains("--min-epochs 0"));
    }

    fn climber(scores: &[f64], paused: bool) -> Climber {
        Climber {
            scores: scores.to_vec(),
            paused,
        }
    }

    #[test]
    fn the_best_paused_trial_of_the_top_third_of_the_highest_rung_goes_on() {
        let ladder = Ladder::new(1, 9, 3).unwrap();
        // Two trials at rung 0: the top third of two is none.
        let mut trials = vec![climber(&[0.5], true), climber(&[0.3], true)];
        assert_eq!(promotion(&ladder, &trials), None);
        // A third: the best of three goes on.
        trials.push(climber(&[0.4], true));
        assert_eq!(promotion(&ladder, &trials), Some((1, 1)));
        // Once it runs, nobody else does until three more arrive.
        trials[1].paused = false;
        assert_eq!(promotion(&ladder, &trials), None);
        trials.extend([
            climber(&[0.9], true),
            climber(&[0.1], true),
            climber(&[0.2], true),
        ]);
        assert_eq!(promotion(&ladder, &trials), Some((4, 1)));
        // A higher rung goes first.
        trials[1] = climber(&[0.3, 0.25], true);
        trials[4] = climber(&[0.1, 0.2], true);
        trials.push(climber(&[0.6, 0.1], true));
        assert_eq!(promotion(&ladder, &trials), Some((6, 2)));
        assert_eq!(rank(&trials, 1, 1), (3, 3));
        assert_eq!(rank(&trials, 6, 0), (6, 7));
        // NaN is never promoted, and a tie goes to the older trial.
        let ties = vec![
            climber(&[f64::NAN], true),
            climber(&[1.0], true),
            climber(&[1.0], true),
        ];
        assert_eq!(promotion(&ladder, &ties), Some((1, 1)));
    }
}
