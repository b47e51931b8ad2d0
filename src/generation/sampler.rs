//! The one token sampler every generation loop uses: repetition penalty, temperature, top-k,
//! top-p (in the order transformers applies them), then greedy or seeded inverse-CDF sampling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{bail_input, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Sample from the distribution; `false` takes the argmax (greedy).
    pub do_sample: bool,
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            do_sample: false,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
        }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            bail_input!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            );
        }
        if self.top_k == Some(0) {
            bail_input!("top_k must be >= 1 (or None to disable it), got 0");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail_input!("top_p must be in (0, 1] (or None to disable it), got {p}");
            }
        }
        if let Some(r) = self.repetition_penalty {
            if !(r.is_finite() && r > 0.0) {
                bail_input!("repetition_penalty must be a finite number > 0, got {r}");
            }
        }
        Ok(())
    }

    fn is_greedy(&self) -> bool {
        !self.do_sample || self.temperature == 0.0
    }

    /// Greedy without a repetition penalty: the choice is the argmax of the raw logits, which
    /// can be taken on the device that holds them.
    pub fn is_plain_argmax(&self) -> bool {
        self.is_greedy() && self.repetition_penalty.is_none()
    }
}

pub struct Sampler {
    cfg: SamplingConfig,
    rng: ChaCha8Rng,
}

/// The random stream of image `index` of a prompt seeded with `seed`: ChaCha8 keyed by the seed,
/// stream number `index` (2^64 independent streams per key). Stream 0 is what
/// `ChaCha8Rng::seed_from_u64(seed)` gives, so a prompt's first image draws what a one-image
/// call always drew. Nothing else goes in: an image's randomness never depends on the other
/// prompts or images of its batch.
pub fn image_stream(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

impl Sampler {
    pub fn new(cfg: SamplingConfig, seed: u64) -> Result<Self> {
        Self::from_rng(cfg, ChaCha8Rng::seed_from_u64(seed))
    }

    /// A sampler drawing from `rng` (e.g. an [`image_stream`]).
    pub fn from_rng(cfg: SamplingConfig, rng: ChaCha8Rng) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, rng })
    }

    /// Pick the next token from one row of logits. `history` holds the tokens the repetition
    /// penalty applies to.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits: Vec<f64> = logits.iter().map(|&x| x as f64).collect();
        if let Some(penalty) = self.cfg.repetition_penalty {
            apply_repetition_penalty(&mut logits, history, penalty);
        }
        if self.cfg.is_greedy() {
            return argmax(&logits) as u32;
        }
        let u: f64 = self.rng.random();
        sample_with_uniform(&logits, &self.cfg, u) as u32
    }
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: divide positive, multiply negative scores.
pub fn apply_repetition_penalty(logits: &mut [f64], history: &[u32], penalty: f64) {
    let mut seen = std::collections::HashSet::new();
    for &t in history {
        if let Some(x) = logits.get_mut(t as usize) {
            if seen.insert(t) {
                *x = if *x < 0.0 { *x * penalty } else { *x / penalty };
            }
        }
    }
}

/// Index of the largest value; the first one on ties, NaN never wins.
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || xs[best].is_nan() {
            best = i;
        }
    }
    best
}

/// The probabilities sampling draws from: softmax(logits / T) restricted to top-k then top-p
/// (renormalised). Entries outside the kept set are 0.
pub fn sampling_probs(logits: &[f64], cfg: &SamplingConfig) -> Vec<f64> {
    let t = if cfg.temperature > 0.0 {
        cfg.temperature
    } else {
        1.0
    };
    let scaled: Vec<f64> = logits.iter().map(|x| x / t).collect();
    let mut order: Vec<usize> = (0..scaled.len()).collect();
    order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]));
    let mut keep = order.len();
    if let Some(k) = cfg.top_k {
        // Keep everything tied with the k-th value, as transformers does.
        let k = k.min(order.len());
        let kth = scaled[order[k - 1]];
        keep = order.iter().take_while(|&&i| scaled[i] >= kth).count();
    }
    let max = scaled[order[0]];
    let mut probs = vec![0.0; scaled.len()];
    let mut total = 0.0;
    for &i in &order[..keep] {
        let e = (scaled[i] - max).exp();
        probs[i] = e;
        total += e;
    }
    for &i in &order[..keep] {
        probs[i] /= total;
    }
    if let Some(p) = cfg.top_p {
        // Keep a token while the mass strictly above it is below p (always keeps the top one).
        let mut above = 0.0;
        let mut kept = 0;
        for &i in &order[..keep] {
            if above < p || kept == 0 {
                above += probs[i];
                kept += 1;
            } else {
                break;
            }
        }
        let mass: f64 = order[..kept].iter().map(|&i| probs[i]).sum();
        for (rank, &i) in order[..keep].iter().enumerate() {
            probs[i] = if rank < kept { probs[i] / mass } else { 0.0 };
        }
    }
    probs
}

/// Inverse-CDF draw with a given uniform `u` in [0, 1).
pub fn sample_with_uniform(logits: &[f64], cfg: &SamplingConfig, u: f64) -> usize {
    let probs = sampling_probs(logits, cfg);
    let mut acc = 0.0;
    let mut last_nonzero = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            acc += p;
            last_nonzero = i;
            if u < acc {
                return i;
            }
        }
    }
    last_nonzero
}

/// A fresh seed from the operating system, for calls that give none.
pub fn fresh_seed() -> u64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(t: f64, k: Option<usize>, p: Option<f64>) -> SamplingConfig {
        SamplingConfig {
            do_sample: true,
            temperature: t,
            top_k: k,
            top_p: p,
            repetition_penalty: None,
        }
    }

    #[test]
    fn inverse_cdf_on_known_uniforms() {
        let logits = [0f64.ln(), 0.5f64.ln(), 0.25f64.ln(), 0.25f64.ln()];
        let c = cfg(1.0, None, None);
        assert_eq!(sample_with_uniform(&logits, &c, 0.0), 1);
        assert_eq!(sample_with_uniform(&logits, &c, 0.49), 1);
        assert_eq!(sample_with_uniform(&logits, &c, 0.51), 2);
        assert_eq!(sample_with_uniform(&logits, &c, 0.99), 3);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [0.1f64.ln(), 0.4f64.ln(), 0.3f64.ln(), 0.2f64.ln()];
        let p = sampling_probs(&logits, &cfg(1.0, Some(2), None));
        assert!((p[1] - 4.0 / 7.0).abs() < 1e-12 && (p[2] - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!((p[0], p[3]), (0.0, 0.0));
        // 0.4 + 0.3 reaches 0.7: the third token has 0.7 above it, not < 0.7.
        let p = sampling_probs(&logits, &cfg(1.0, None, Some(0.7)));
        assert_eq!(p.iter().filter(|&&x| x > 0.0).count(), 2);
        let p = sampling_probs(&logits, &cfg(1.0, None, Some(0.71)));
        assert_eq!(p.iter().filter(|&&x| x > 0.0).count(), 3);
    }

    #[test]
    fn empirical_distribution_matches_softmax() {
        let logits = [1.0f32, 2.0, 0.5, -1.0];
        let mut s = Sampler::new(cfg(1.0, None, None), 42).unwrap();
        let n = 200_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits, &[]) as usize] += 1;
        }
        let expect = sampling_probs(&logits.map(|x| x as f64), &cfg(1.0, None, None));
        for i in 0..4 {
            let freq = counts[i] as f64 / n as f64;
            // 5 standard deviations of a binomial proportion.
            let sd = (expect[i] * (1.0 - expect[i]) / n as f64).sqrt();
            assert!(
                (freq - expect[i]).abs() < 5.0 * sd + 1e-9,
                "token {i}: {freq} vs {}",
                expect[i]
            );
        }
    }

    #[test]
    fn low_temperature_is_argmax_and_seeds_repeat() {
        let logits = [0.3f32, 0.31, 0.1];
        let mut s = Sampler::new(cfg(1e-4, None, None), 1).unwrap();
        assert!((0..100).all(|_| s.sample(&logits, &[]) == 1));
        let mut greedy = Sampler::new(cfg(0.0, None, None), 1).unwrap();
        assert_eq!(greedy.sample(&logits, &[]), 1);
        let draw = |seed| {
            let mut s = Sampler::new(cfg(1.0, None, None), seed).unwrap();
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn repetition_penalty_follows_transformers() {
        let mut l = vec![2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(cfg(-1.0, None, None).validate().is_err());
        assert!(cfg(f64::NAN, None, None).validate().is_err());
        assert!(cfg(1.0, Some(0), None).validate().is_err());
        assert!(cfg(1.0, None, Some(0.0)).validate().is_err());
        assert!(cfg(1.0, None, Some(1.5)).validate().is_err());
    }
}
