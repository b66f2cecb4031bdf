//! Watermarks across a repartition. A task whose sink is a repartition topic appends a
//! watermark record to every partition of it when its watermark has moved, in the same
//! commit as its outputs. A later stage's task keeps the last watermark of each upstream
//! task and takes the lowest as its own, as Flink does: an upstream partition that lags
//! holds the stage back instead of having its records turn late downstream. (The watermark records themselves are in `io::watermark`.)

/// The last watermark of each upstream task (`i64::MIN` before its first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamWatermarks(Vec<i64>);

impl UpstreamWatermarks {
    pub fn new(partitions: u32) -> Self {
        UpstreamWatermarks(vec![i64::MIN; partitions as usize])
    }

    /// Watermarks as saved, fitted to `partitions` upstream tasks.
    pub fn from_saved(mut saved: Vec<i64>, partitions: u32) -> Self {
        saved.resize(partitions as usize, i64::MIN);
        UpstreamWatermarks(saved)
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.0
    }

    /// Takes upstream task `partition`'s watermark (a watermark never moves back; a
    /// partition this stage does not know is ignored).
    pub fn update(&mut self, partition: u32, watermark: i64) {
        if let Some(w) = self.0.get_mut(partition as usize) {
            *w = (*w).max(watermark);
        }
    }

    /// The lowest upstream watermark: how far the whole stage upstream has come.
    pub fn low(&self) -> i64 {
        self.0.iter().copied().min().unwrap_or(i64::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_watermark_is_the_lowest_upstream_one_and_never_moves_back() {
        let mut w = UpstreamWatermarks::new(3);
        assert_eq!(w.low(), i64::MIN);
        w.update(0, 100);
        w.update(1, 50);
        assert_eq!(w.low(), i64::MIN, "partition 2 has not reported");
        w.update(2, 70);
        assert_eq!(w.low(), 50);
        w.update(1, 10);
        assert_eq!(w.low(), 50, "a watermark does not move back");
        w.update(7, 0);
        assert_eq!(w.as_slice(), [100, 50, 70]);
        let saved = UpstreamWatermarks::from_saved(vec![5], 2);
        assert_eq!(saved.as_slice(), [5, i64::MIN]);
    }
}
