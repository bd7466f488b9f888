//! Order statistics, spread, outliers and a two-sample significance test for
//! boot-time samples. Small samples (tens of boots), so everything is exact
//! over sorted copies; no distribution is assumed.

/// Two-sided p-value below which a difference is called larger than the noise.
pub(crate) const SIGNIFICANCE_LEVEL: f64 = 0.01;

/// Tukey's fence: values further than this many IQRs outside the quartiles are outliers.
pub(crate) const OUTLIER_FENCE_IQRS: f64 = 1.5;

/// The `p`-th percentile (0-100) of sorted data, linearly interpolated
/// between closest ranks (Hyndman & Fan type 7, the default of R and NumPy).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no data");
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

pub(crate) fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values), 50.0)
}

/// What the tables print for one figure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) p90: f64,
    pub(crate) max: f64,
    pub(crate) q1: f64,
    pub(crate) q3: f64,
    /// Interquartile range, q3 − q1.
    pub(crate) iqr: f64,
    /// Median absolute deviation from the median (unscaled).
    pub(crate) mad: f64,
    /// Values beyond [`OUTLIER_FENCE_IQRS`] × IQR outside the quartiles, in sample order.
    pub(crate) outliers: Vec<f64>,
}

/// `None` for no data.
pub(crate) fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let sorted = sorted(values);
    let median = percentile(&sorted, 50.0);
    let q1 = percentile(&sorted, 25.0);
    let q3 = percentile(&sorted, 75.0);
    let iqr = q3 - q1;
    let deviations: Vec<f64> = values.iter().map(|value| (value - median).abs()).collect();
    let (low_fence, high_fence) = (q1 - OUTLIER_FENCE_IQRS * iqr, q3 + OUTLIER_FENCE_IQRS * iqr);
    Some(Summary {
        count: values.len(),
        min: sorted[0],
        median,
        p90: percentile(&sorted, 90.0),
        max: sorted[sorted.len() - 1],
        q1,
        q3,
        iqr,
        mad: self::median(&deviations),
        outliers: values
            .iter()
            .copied()
            .filter(|&value| value < low_fence || value > high_fence)
            .collect(),
    })
}

/// The result of a two-sided Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MannWhitney {
    /// U of the first sample: pairs (a, b) with a > b, ties counted one half.
    pub(crate) u: f64,
    /// The normal approximation's z, with tie and continuity corrections.
    pub(crate) z: f64,
    pub(crate) p_value: f64,
}

impl MannWhitney {
    pub(crate) fn significant(&self) -> bool {
        self.p_value < SIGNIFICANCE_LEVEL
    }
}

/// Mann-Whitney U (Wilcoxon rank-sum) test of whether one sample tends to be
/// larger than the other, two-sided, by the normal approximation with the
/// tie correction and a continuity correction of 0.5 (adequate from about
/// 8 values per sample; bench takes 20). `None` if a sample is empty.
pub(crate) fn mann_whitney_u(first: &[f64], second: &[f64]) -> Option<MannWhitney> {
    if first.is_empty() || second.is_empty() {
        return None;
    }
    let (n1, n2) = (first.len() as f64, second.len() as f64);
    let mut pooled: Vec<(f64, bool)> = first
        .iter()
        .map(|&value| (value, true))
        .chain(second.iter().map(|&value| (value, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mid-ranks for ties; Σ(t³ − t) over tie groups for the variance.
    let mut rank_sum_first = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let in_first = pooled[start..end].iter().filter(|entry| entry.1).count();
        rank_sum_first += mid_rank * in_first as f64;
        let tied = (end - start) as f64;
        tie_term += tied * tied * tied - tied;
        start = end;
    }
    let u = rank_sum_first - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let total = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if variance <= 0.0 {
        // Every value is the same: no evidence of any difference.
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let distance = ((u - mean).abs() - 0.5).max(0.0);
    let z = distance / variance.sqrt() * (u - mean).signum();
    Some(MannWhitney {
        u,
        z,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
    })
}

/// The complementary error function, fractional error below 1.2e-7
/// everywhere (Numerical Recipes in C, 2nd ed., §6.2 `erfcc`, a Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let polynomial = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let result = t * polynomial.exp();
    if x >= 0.0 { result } else { 2.0 - result }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn percentiles_on_known_data() {
        let one_to_ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&one_to_ten, 0.0), 1.0);
        assert_eq!(percentile(&one_to_ten, 100.0), 10.0);
        assert!(close(percentile(&one_to_ten, 50.0), 5.5, 1e-12));
        assert!(close(percentile(&one_to_ten, 90.0), 9.1, 1e-12));
        assert!(close(percentile(&one_to_ten, 25.0), 3.25, 1e-12));
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn summary_spread_and_outliers() {
        // Unsorted on purpose; 100 is far outside, 1 is just inside.
        let values = [4.0, 2.0, 100.0, 3.0, 5.0, 1.0, 6.0, 7.0, 8.0];
        let summary = summarize(&values).unwrap();
        assert_eq!(summary.count, 9);
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.max, 100.0);
        assert_eq!(summary.median, 5.0);
        assert_eq!((summary.q1, summary.q3, summary.iqr), (3.0, 7.0, 4.0));
        // |x − 5|: 1 3 95 2 0 4 1 2 3 → median 2.
        assert_eq!(summary.mad, 2.0);
        assert_eq!(summary.outliers, [100.0]);
        assert!(close(summary.p90, 8.0 + 0.2 * 92.0, 1e-9));
        assert_eq!(summarize(&[]), None);
        let flat = summarize(&[2.0; 5]).unwrap();
        assert_eq!((flat.iqr, flat.mad), (0.0, 0.0));
        assert!(flat.outliers.is_empty());
    }

    #[test]
    fn mann_whitney_separates_clearly_different_samples() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        let test = mann_whitney_u(&a, &b).unwrap();
        assert_eq!(test.u, 0.0);
        // SciPy: mannwhitneyu(a, b, method="asymptotic") → p = 0.01219.
        assert!(close(test.p_value, 0.012_185, 1e-5), "{test:?}");
        assert!(test.z < 0.0);
        let fast: Vec<f64> = (0..20).map(|i| 40.0 + f64::from(i % 7)).collect();
        let slow: Vec<f64> = (0..20).map(|i| 60.0 + f64::from(i % 5)).collect();
        let test = mann_whitney_u(&fast, &slow).unwrap();
        assert!(test.significant() && test.p_value < 1e-6, "{test:?}");
        let reversed = mann_whitney_u(&slow, &fast).unwrap();
        assert!(close(reversed.p_value, test.p_value, 1e-12));
        assert_eq!(reversed.u, 400.0);
    }

    #[test]
    fn mann_whitney_finds_nothing_in_identical_or_interleaved_samples() {
        let same: Vec<f64> = (0..20).map(|i| 50.0 + f64::from(i)).collect();
        let test = mann_whitney_u(&same, &same).unwrap();
        assert!(!test.significant());
        assert!(test.p_value > 0.9, "{test:?}");
        let constant = mann_whitney_u(&[3.0; 10], &[3.0; 12]).unwrap();
        assert_eq!(constant.p_value, 1.0);
        let even: Vec<f64> = (0..20).map(|i| f64::from(2 * i)).collect();
        let odd: Vec<f64> = (0..20).map(|i| f64::from(2 * i + 1)).collect();
        assert!(!mann_whitney_u(&even, &odd).unwrap().significant());
        assert_eq!(mann_whitney_u(&[], &[1.0]), None);
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
        assert!(close(erfc(3.0), 2.209_049_7e-5, 1e-10));
    }
}
