//! Rank 0 of a world of 2 whose collectives change nothing: what rank 0 computes alone, for
//! the DDP paths of tests that run in one process.

#[derive(Debug)]
pub struct RankZeroOfTwo;

impl lightning::dist::Collective for RankZeroOfTwo {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        2
    }
    fn barrier(&self) -> lightning::Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, _: lightning::dist::Buf<'_>) -> lightning::Result<()> {
        Ok(())
    }
    fn all_reduce_max(&self, _: lightning::dist::Buf<'_>) -> lightning::Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: lightning::dist::Buf<'_>, _: usize) -> lightning::Result<()> {
        Ok(())
    }
}
