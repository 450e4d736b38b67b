//! An all-gather of any size in pieces that an engine counting in `int`s can move (MPI's counts and
//! displacements are `int`s: 2 GiB at most in one call). The lengths are exchanged as `u64`; then
//! each round gathers a piece of at most `piece` bytes from every rank, so that a round's whole
//! receive buffer, and every displacement in it, stays within the limit.
#![cfg_attr(not(feature = "mpi"), allow(dead_code))] // used by the MPI platform, and tested without it

use std::ops::Range;

/// The rounds of an all-gather of every rank's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GatherPlan {
    /// Every rank's length, in rank order.
    lengths: Vec<usize>,
    /// The most bytes one rank sends in one round.
    piece: usize,
}

/// One round of a [`GatherPlan`]: what each rank sends in it, and where it lands in the round's
/// receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Round {
    /// Bytes each rank sends, in rank order.
    pub(crate) counts: Vec<usize>,
    /// Where each rank's bytes start in the receive buffer.
    pub(crate) displs: Vec<usize>,
    /// The receive buffer's length: the sum of the counts.
    pub(crate) total: usize,
}

impl GatherPlan {
    /// The plan for ranks that hold `lengths` bytes each, moving at most `limit` bytes in all per
    /// round (at least a byte per rank). `Err` with the first length that this process cannot
    /// address.
    pub(crate) fn new(lengths: &[u64], limit: usize) -> Result<Self, u64> {
        let lengths = lengths
            .iter()
            .map(|&n| usize::try_from(n).map_err(|_| n))
            .collect::<Result<Vec<_>, _>>()?;
        let piece = (limit / lengths.len().max(1)).max(1);
        Ok(Self { lengths, piece })
    }

    /// Every rank's length.
    pub(crate) fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// The number of rounds: enough for the longest rank (none when every rank sends nothing).
    pub(crate) fn rounds(&self) -> usize {
        self.lengths.iter().max().map_or(0, |&n| n.div_ceil(self.piece))
    }

    /// The part of `rank`'s bytes that it sends in round `round` (empty once it has sent them all).
    pub(crate) fn range(&self, rank: usize, round: usize) -> Range<usize> {
        let len = self.lengths.get(rank).copied().unwrap_or(0);
        let start = round.saturating_mul(self.piece).min(len);
        start..start.saturating_add(self.piece).min(len)
    }

    /// Round `round`: the counts and displacements of every rank.
    pub(crate) fn round(&self, round: usize) -> Round {
        let counts: Vec<usize> = (0..self.lengths.len())
            .map(|rank| self.range(rank, round).len())
            .collect();
        let mut total = 0;
        let displs = counts
            .iter()
            .map(|&n| {
                let at = total;
                total += n;
                at
            })
            .collect();
        Round {
            counts,
            displs,
            total,
        }
    }
}

/// Every rank's bytes, in rank order, gathered round by round: `exchange(round, mine, counts,
/// received)` is the engine's all-gather of one round, which fills `received` (`round.total` bytes)
/// with every rank's piece at its displacement. `mine` is this rank's (`rank`'s) bytes.
pub(crate) fn gather_in_pieces<E>(
    plan: &GatherPlan,
    rank: usize,
    mine: &[u8],
    mut exchange: impl FnMut(&Round, &[u8], &mut [u8]) -> Result<(), E>,
) -> Result<Vec<Vec<u8>>, E> {
    let mut all: Vec<Vec<u8>> = plan.lengths().iter().map(|&n| Vec::with_capacity(n)).collect();
    let mut received = Vec::new();
    for index in 0..plan.rounds() {
        let round = plan.round(index);
        received.clear();
        received.resize(round.total, 0);
        let part = mine.get(plan.range(rank, index)).unwrap_or_default();
        exchange(&round, part, &mut received)?;
        for (out, (&at, &n)) in all.iter_mut().zip(round.displs.iter().zip(&round.counts)) {
            out.extend_from_slice(&received[at..at + n]);
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gather of `ranks`' bytes on every rank, with an exchange that reads every rank's piece of
    /// the round the way an engine would deliver it.
    fn simulate(ranks: &[Vec<u8>], limit: usize) -> Vec<Vec<Vec<u8>>> {
        let lengths: Vec<u64> = ranks.iter().map(|r| r.len() as u64).collect();
        let plan = GatherPlan::new(&lengths, limit).unwrap();
        (0..ranks.len())
            .map(|rank| {
                let mut index = 0;
                gather_in_pieces(&plan, rank, &ranks[rank], |round, mine, received| {
                    let most = limit.max(ranks.len());
                    assert!(round.total <= most, "a round over the limit: {round:?}");
                    assert_eq!(mine, &ranks[rank][plan.range(rank, index)]);
                    for (other, bytes) in ranks.iter().enumerate() {
                        let piece = &bytes[plan.range(other, index)];
                        let at = round.displs[other];
                        received[at..at + piece.len()].copy_from_slice(piece);
                    }
                    index += 1;
                    Ok::<(), ()>(())
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_rank_gets_every_ranks_bytes_in_rank_order_whatever_the_limit() {
        let ranks: Vec<Vec<u8>> = [0usize, 7, 25, 1]
            .iter()
            .enumerate()
            .map(|(r, &n)| (0..n).map(|i| (i * 7 + r * 31) as u8).collect())
            .collect();
        for limit in [1, 3, 4, 8, 10, 100, 1 << 30] {
            for got in simulate(&ranks, limit) {
                assert_eq!(got, ranks, "limit {limit}");
            }
        }
        let none = vec![Vec::new(); 3];
        assert_eq!(simulate(&none, 10), vec![none.clone(); 3]);
        assert_eq!(GatherPlan::new(&[0, 0, 0], 10).unwrap().rounds(), 0);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn lengths_over_2_gib_go_in_rounds_whose_counts_and_displacements_fit_an_int() {
        let limit = i32::MAX as usize;
        let lengths = [5u64 << 30, 0, 3 << 30, (1 << 31) + 1];
        let plan = GatherPlan::new(&lengths, limit).unwrap();
        let piece = limit / lengths.len();
        assert_eq!(plan.rounds(), (5usize << 30).div_ceil(piece));
        let mut sent = [0usize; 4];
        for index in 0..plan.rounds() {
            let round = plan.round(index);
            assert!(round.total <= limit);
            for (rank, sent) in sent.iter_mut().enumerate() {
                let range = plan.range(rank, index);
                assert_eq!(range.start, *sent, "rank {rank} round {index}: contiguous");
                assert_eq!(round.counts[rank], range.len());
                assert!(i32::try_from(round.displs[rank] + round.counts[rank]).is_ok());
                *sent = range.end;
            }
        }
        let lengths: Vec<usize> = lengths.iter().map(|&n| n as usize).collect();
        assert_eq!(sent.to_vec(), lengths, "every byte of every rank, once");
        // A world of one and a limit below the world size still move at least a byte per round.
        assert_eq!(GatherPlan::new(&[10], limit).unwrap().rounds(), 1);
        assert_eq!(GatherPlan::new(&[2, 2, 2], 1).unwrap().rounds(), 2);
    }
}
