//! Downsampling to pixel columns. A month of 1 s rows becomes one bucket per column that
//! keeps the mean, the minimum and the maximum, so spikes survive; each row is spread over
//! the time it covers, so a column no row covers is a gap (drawn as nothing, never zero).

use std::collections::HashMap;

/// The pixel columns of the time range `[from_us, to_us)`.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    pub from_us: i64,
    pub to_us: i64,
    pub columns: usize,
}

impl Grid {
    pub fn new(from_us: i64, to_us: i64, columns: usize) -> Grid {
        Grid {
            from_us,
            to_us,
            columns: columns.max(1),
        }
    }

    pub fn column_us(&self) -> f64 {
        (self.to_us - self.from_us) as f64 / self.columns as f64
    }

    /// Middle of column `c`, in microseconds.
    pub fn mid_us(&self, c: usize) -> i64 {
        self.from_us + ((c as f64 + 0.5) * self.column_us()) as i64
    }

    /// Start of column `c`, in microseconds.
    pub fn start_us(&self, c: usize) -> i64 {
        self.from_us + (c as f64 * self.column_us()) as i64
    }

    /// Columns that `[start_us, end_us)` overlaps, with the overlap in seconds.
    pub fn overlaps(&self, start_us: i64, end_us: i64) -> impl Iterator<Item = (usize, f64)> + '_ {
        let start = start_us.max(self.from_us);
        let end = end_us.min(self.to_us);
        let width = self.column_us();
        let first = ((start - self.from_us) as f64 / width).floor().max(0.0) as usize;
        let last = if end > start {
            (((end - self.from_us) as f64 / width).ceil() as usize).min(self.columns)
        } else {
            first
        };
        (first..last).filter_map(move |c| {
            let c_start = self.from_us as f64 + c as f64 * width;
            let c_end = c_start + width;
            let overlap = (end as f64).min(c_end) - (start as f64).max(c_start);
            (overlap > 0.0).then_some((c, overlap / 1e6))
        })
    }
}

/// One column of one series: the time covered, the time integral of the value, and the
/// extremes of the rows seen.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub cover_s: f64,
    pub integral: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            cover_s: 0.0,
            integral: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

/// What a chart draws of one column: the mean over the column, and the band of row values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// Columns of several keyed series (users, interfaces) of one table. A key without a row
/// where the table has rows counts as 0: csm writes rows only for active keys.
#[derive(Clone, Debug)]
pub struct Binned {
    pub grid: Grid,
    names: Vec<String>,
    index: HashMap<String, usize>,
    series: Vec<Vec<Bucket>>,
}

impl Binned {
    pub fn new(grid: Grid) -> Binned {
        Binned {
            grid,
            names: Vec::new(),
            index: HashMap::new(),
            series: Vec::new(),
        }
    }

    /// The slot of a key, created on first use; loaders keep it to skip the lookup per row.
    pub fn key_index(&mut self, key: &str) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        self.names.push(key.to_string());
        self.series.push(vec![Bucket::default(); self.grid.columns]);
        self.index.insert(key.to_string(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// A row saying the value averaged `mean` (peaking at `max`) over `[start_us, end_us)`.
    pub fn add_span(&mut self, key: &str, start_us: i64, end_us: i64, mean: f64, max: f64) {
        let index = self.key_index(key);
        self.add_span_at(index, start_us, end_us, mean, max);
    }

    /// [`Binned::add_span`] for a key slot from [`Binned::key_index`].
    pub fn add_span_at(&mut self, index: usize, start_us: i64, end_us: i64, mean: f64, max: f64) {
        let grid = self.grid;
        if end_us <= grid.from_us || start_us >= grid.to_us {
            return;
        }
        let buckets = &mut self.series[index];
        let mut add = |c: usize, seconds: f64| {
            let b = &mut buckets[c];
            b.cover_s += seconds;
            b.integral += mean * seconds;
            b.min = b.min.min(mean);
            b.max = b.max.max(max);
        };
        let end_us = end_us.max(start_us + 1);
        // Most rows (1 s, 1 min) fall inside one column: no iterator, no float overlap.
        let width = grid.column_us();
        let first = ((start_us - grid.from_us) as f64 / width).floor();
        if first >= 0.0 && ((end_us - grid.from_us) as f64) <= (first + 1.0) * width {
            add(first as usize, (end_us - start_us) as f64 / 1e6);
            return;
        }
        for (c, seconds) in grid.overlaps(start_us, end_us) {
            add(c, seconds);
        }
    }

    /// Keys in name order, for stable output.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        let mut names: Vec<&String> = self.names.iter().collect();
        names.sort();
        names.into_iter()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Time the table covers in each column: the best-covered key's, since every key
    /// active in an interval has a row for the whole interval.
    pub fn coverage(&self) -> Vec<f64> {
        let mut cover = vec![0.0; self.grid.columns];
        for buckets in &self.series {
            for (c, b) in buckets.iter().enumerate() {
                cover[c] = f64::max(cover[c], b.cover_s);
            }
        }
        cover
    }

    /// The key's level per column; `None` where the table has no rows (a gap).
    pub fn levels(&self, key: &str, coverage: &[f64]) -> Vec<Option<Level>> {
        let empty = Vec::new();
        let buckets = self.index.get(key).map_or(&empty, |&i| &self.series[i]);
        (0..self.grid.columns)
            .map(|c| {
                let cover = coverage[c];
                if cover <= 0.0 {
                    return None;
                }
                let b = buckets.get(c).copied().unwrap_or_default();
                let partial = b.cover_s < cover * 0.999;
                let mean = b.integral / cover;
                let (min, max) = if b.cover_s > 0.0 {
                    (if partial { 0.0 } else { b.min }, b.max.max(mean))
                } else {
                    (0.0, 0.0)
                };
                Some(Level { mean, min, max })
            })
            .collect()
    }

    /// The key's mean over the time the table has data (not over the whole range, so the
    /// same rows give the same average whatever range is drawn): its time integral over
    /// the covered time.
    pub fn time_average(&self, key: &str, coverage: &[f64]) -> f64 {
        let covered: f64 = coverage.iter().sum();
        let integral: f64 = self
            .index
            .get(key)
            .map_or(0.0, |&i| self.series[i].iter().map(|b| b.integral).sum());
        if covered > 0.0 {
            integral / covered
        } else {
            0.0
        }
    }

    /// Sum of several keys' levels (for "others" and totals).
    pub fn summed_levels(&self, keys: &[&String], coverage: &[f64]) -> Vec<Option<Level>> {
        let mut total: Vec<Option<Level>> = vec![None; self.grid.columns];
        for key in keys {
            for (slot, level) in total.iter_mut().zip(self.levels(key, coverage)) {
                *slot = match (*slot, level) {
                    (_, None) => None,
                    (None, Some(l)) => Some(l),
                    (Some(a), Some(l)) => Some(Level {
                        mean: a.mean + l.mean,
                        min: a.min + l.min,
                        max: a.max + l.max,
                    }),
                };
            }
        }
        total
    }
}

/// Gauges (memory, beancounters) are samples at instants: each holds until the next
/// sample, unless that is more than 2.5 typical intervals away, which is a gap.
pub fn gauge_spans(times_us: &[i64]) -> Vec<(i64, i64)> {
    let typical = typical_interval_us(times_us);
    times_us
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let next = times_us.get(i + 1).copied().unwrap_or(t + typical);
            let end = if next - t > typical * 5 / 2 {
                t + typical
            } else {
                next
            };
            (t, end.max(t + 1))
        })
        .collect()
}

/// Median spacing of sorted, deduplicated sample times (10 s when unknown).
pub fn typical_interval_us(times_us: &[i64]) -> i64 {
    let mut steps: Vec<i64> = times_us
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|&d| d > 0)
        .collect();
    if steps.is_empty() {
        return 10_000_000;
    }
    let mid = steps.len() / 2;
    *steps.select_nth_unstable(mid).1
}

/// The `q`-quantile (0..=1) of the values: csm's one definition, nearest rank.
pub use csm_store::stats::quantile;

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_spike_survives_downsampling_as_the_column_max() {
        // One hour of 1 s rows at 10, one second at 10 000, on 60 columns (1 minute each).
        let grid = Grid::new(0, 3600 * S, 60);
        let mut binned = Binned::new(grid);
        for s in 0..3600 {
            let v = if s == 1234 { 10_000.0 } else { 10.0 };
            binned.add_span("eth0", s * S, (s + 1) * S, v, v);
        }
        let cover = binned.coverage();
        let levels = binned.levels("eth0", &cover);
        let spike = levels[20].unwrap();
        assert_eq!(spike.max, 10_000.0);
        assert!((spike.mean - (59.0 * 10.0 + 10_000.0) / 60.0).abs() < 1e-9);
        assert_eq!(
            levels[0].unwrap(),
            Level {
                mean: 10.0,
                min: 10.0,
                max: 10.0
            }
        );
    }

    #[test]
    fn columns_without_rows_are_gaps_and_absent_keys_are_zero() {
        let grid = Grid::new(0, 100 * S, 10);
        let mut binned = Binned::new(grid);
        for s in (0..100).filter(|s| !(40..70).contains(s)) {
            binned.add_span("a", s * S, (s + 1) * S, 5.0, 5.0);
        }
        binned.add_span("b", 0, S, 7.0, 7.0);
        let cover = binned.coverage();
        let a = binned.levels("a", &cover);
        assert!(a[4].is_none() && a[5].is_none() && a[6].is_none());
        assert_eq!(a[3].unwrap().mean, 5.0);
        let b = binned.levels("b", &cover);
        assert!((b[0].unwrap().mean - 0.7).abs() < 1e-9);
        assert_eq!(b[1].unwrap().mean, 0.0);
        assert!(b[5].is_none());
    }

    #[test]
    fn a_long_row_covers_every_column_it_spans() {
        // A 60 s roll-up row on 6 columns of 10 s each.
        let grid = Grid::new(0, 60 * S, 6);
        let mut binned = Binned::new(grid);
        binned.add_span("x", 0, 60 * S, 3.0, 9.0);
        let cover = binned.coverage();
        assert!(binned
            .levels("x", &cover)
            .iter()
            .all(|l| l.unwrap().mean == 3.0));
    }

    #[test]
    fn gauge_samples_hold_until_the_next_unless_it_is_far() {
        let spans = gauge_spans(&[0, 10, 20, 30, 200, 210]);
        assert_eq!(
            spans,
            vec![
                (0, 10),
                (10, 20),
                (20, 30),
                (30, 40),
                (200, 210),
                (210, 220)
            ]
        );
    }

    #[test]
    fn averages_are_over_the_time_with_data_whatever_the_range() {
        // One minute at 40 % then one at 50 %, drawn in a 5 min and in a 24 h range.
        for to_s in [300, 86_400] {
            let mut b = Binned::new(Grid::new(0, to_s * S, 880));
            b.add_span("alice", 0, 60 * S, 40.0, 40.0);
            b.add_span("alice", 60 * S, 120 * S, 50.0, 50.0);
            let avg = b.time_average("alice", &b.coverage());
            assert!((avg - 45.0).abs() < 1e-9, "{avg} over {to_s} s");
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        // ⌈100 · 0.5⌉ = 50th value (round((n−1)q) used to give the 51st).
        assert_eq!(quantile(&mut v, 0.5), Some(50.0));
        assert_eq!(quantile(&mut v, 1.0), Some(100.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
