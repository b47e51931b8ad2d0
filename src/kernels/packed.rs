//! `y = x · Wᵀ` for a few rows (decode steps) and a bf16 weight packed into column panels.
//!
//! The checkpoint layout (n × k, row-major) suits a dot product per output, whose vector
//! operands are both along k: each multiply-add needs a fresh vector of x *and* of W, so a
//! kernel over a few input rows runs out of load bandwidth and registers long before it runs out
//! of multiply-adds (the row-major few-row kernel reached ≈ 130 of 410 GFLOPS on 16 rows). Here
//! the weight is stored once, at load time, as panels of [`NR`] outputs: for each k the panel
//! holds those outputs' 32 weights side by side (64 bytes), so one load gives two f32 vectors
//! of outputs and each input value is *broadcast*: a row of x costs one scalar load per 2
//! multiply-adds, the classic GEMM micro-kernel. A decode step (1 to [`super::few_rows::FEW_ROWS`]
//! rows) streams each panel once, with software prefetch. Many rows (a prefill) are left to the
//! GEMM on panels widened to f32 ([`super::weight_matmul`]): this kernel, given row blocks that
//! stay in L2, matched the GEMM on one prompt's shapes alone but was slower inside the model
//! (16-prompt batched prefill 165 s against 121 s).
//!
//! Within a panel's k-row the 32 bf16 are interleaved — output `j < 16` at slot `2j`, output
//! `16 + j` at slot `2j + 1` — so a 32-bit lane holds one of each: shifting it left by 16 gives
//! the first as f32, masking off its low half the second (bf16 is the top half of an f32), two
//! cheap integer operations instead of a widening shuffle.
//!
//! Every output is summed in one fixed order whatever the row count, the rows beside it and the
//! SIMD level (any row count works; tests cover more than a decode step's): over k in blocks of [`KC`], each block's products accumulated from zero with
//! fused multiply-adds in k order, each block sum then added to the output. So the SIMD kernels
//! equal the scalar reference bit for bit, and a row's result never depends on its batch.

use super::SendPtr;
use half::bf16;
use rayon::prelude::*;

use super::few_rows::{detected_level, SimdLevel};

/// Outputs per panel.
pub const NR: usize = 32;
/// k per block sum.
pub const KC: usize = 256;
/// Weight bytes per parallel task (whole panels).
const TASK_BYTES: usize = 256 << 10;

/// The slot of output `j` (< [`NR`]) within a packed k-row.
const fn slot(j: usize) -> usize {
    if j < NR / 2 {
        2 * j
    } else {
        2 * (j - NR / 2) + 1
    }
}

/// A bf16 weight (n × k, checkpoint layout) packed into panels of [`NR`] outputs; a last,
/// partial panel is padded with zeros.
#[derive(Clone)]
pub struct PackedBf16 {
    n: usize,
    k: usize,
    data: Vec<u16>,
}

impl std::fmt::Debug for PackedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedBf16({} × {})", self.n, self.k)
    }
}

impl PackedBf16 {
    /// Packs `w` (n × k, row-major).
    pub fn pack(w: &[bf16], n: usize, k: usize) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "PackedBf16::pack: {} values for {n} × {k}",
            w.len()
        );
        let panels = n.div_ceil(NR);
        let mut data = vec![0u16; panels * k * NR];
        if k > 0 {
            data.par_chunks_mut(k * NR)
                .enumerate()
                .for_each(|(p, panel)| {
                    let live = NR.min(n - p * NR);
                    let rows = &w[p * NR * k..][..live * k];
                    // Tiles of NR × NR: one cache line of each of the panel's rows in, one
                    // k-row (a cache line) of the panel out.
                    let mut tile = [[0u16; NR]; NR];
                    for k0 in (0..k).step_by(NR) {
                        let kt = NR.min(k - k0);
                        for (j, t) in tile.iter_mut().enumerate().take(live) {
                            let src = &rows[j * k + k0..][..kt];
                            if let Ok(full) = <&[bf16; NR]>::try_from(src) {
                                *t = full.map(bf16::to_bits);
                            } else {
                                for (d, s) in t.iter_mut().zip(src) {
                                    *d = s.to_bits();
                                }
                            }
                        }
                        for (kk, line) in
                            panel[k0 * NR..][..kt * NR].chunks_exact_mut(NR).enumerate()
                        {
                            for (j, t) in tile.iter().enumerate().take(live) {
                                line[slot(j)] = t[kk];
                            }
                        }
                    }
                });
        }
        Self { n, k, data }
    }

    /// (n, k): outputs and inputs.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The weight back in its checkpoint layout (n × k, row-major).
    pub fn unpack(&self) -> Vec<bf16> {
        let (n, k) = (self.n, self.k);
        let mut w = vec![bf16::ZERO; n * k];
        for (j, row) in w.chunks_mut(k.max(1)).enumerate().take(n) {
            let panel = &self.data[(j / NR) * k * NR..];
            let s = slot(j % NR);
            for (kk, v) in row.iter_mut().enumerate() {
                *v = bf16::from_bits(panel[kk * NR + s]);
            }
        }
        w
    }

    /// The outputs of `parts` (same k) side by side, in order, when every part but the last
    /// fills its panels; `None` otherwise.
    pub fn concat(parts: &[&PackedBf16]) -> Option<Self> {
        let k = parts.first()?.k;
        let (_, init) = parts.split_last()?;
        if parts.iter().any(|p| p.k != k) || init.iter().any(|p| !p.n.is_multiple_of(NR)) {
            return None;
        }
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        Some(Self {
            n: parts.iter().map(|p| p.n).sum(),
            k,
            data,
        })
    }

    /// Outputs `j0..j0 + rows` (`j0` a multiple of [`NR`]) widened to f32 into `dst`, k-major:
    /// output `j0 + j` at k is element `k·rows + j`.
    ///
    /// # Safety
    /// `dst` addresses k · rows writable f32s.
    pub unsafe fn widen_k_major_into(&self, j0: usize, rows: usize, dst: *mut f32) {
        assert!(j0.is_multiple_of(NR) && j0 + rows <= self.n);
        let k = self.k;
        let level = detected_level();
        for c0 in (0..rows).step_by(NR) {
            let panel = &self.data[(j0 + c0) / NR * k * NR..][..k * NR];
            // SAFETY: the panel's k-rows go to columns c0 .. c0 + live of the k rows of `dst`
            // (k · rows f32s, as the caller says), which the panels together cover exactly.
            unsafe { widen_columns(level, panel, NR.min(rows - c0), dst.add(c0), rows) };
        }
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// A panel's first `live` outputs as f32, k-row `kk` to `dst[kk·stride ..][..live]`.
///
/// # Safety
/// `dst` addresses `panel.len() / NR` rows of `live` writable f32s at `stride`; `live ≤ NR`.
unsafe fn widen_columns(
    level: SimdLevel,
    panel: &[u16],
    live: usize,
    dst: *mut f32,
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if live == NR && level == SimdLevel::Avx512 {
        // SAFETY: as the caller says; the level is supported (`detected_level`).
        unsafe { x86::widen_columns_avx512(panel, dst, stride) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if live == NR && level == SimdLevel::Avx2 {
        // SAFETY: as the caller says; the level is supported (`detected_level`).
        unsafe { x86::widen_columns_avx2(panel, dst, stride) };
        return;
    }
    let _ = level;
    for (kk, line) in panel.chunks_exact(NR).enumerate() {
        for j in 0..live {
            // SAFETY: as the caller says.
            unsafe { *dst.add(kk * stride + j) = f32::from_bits((line[slot(j)] as u32) << 16) };
        }
    }
}

/// `y (m × n) = x (m × k) · Wᵀ`, row-major, at `level` (capped at what the CPU supports).
pub fn matmul_packed(level: SimdLevel, x: &[f32], m: usize, w: &PackedBf16, y: &mut [f32]) {
    let (n, k) = w.dims();
    assert!(x.len() >= m * k && y.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    y[..m * n].fill(0.0);
    if k == 0 {
        return;
    }
    let level = level.min(detected_level());
    let x = pack_rows(&x[..m * k], m, k, rows_per_call(level));
    let x = &x[..];
    let panel_len = k * NR;
    let panels_per_task = (TASK_BYTES / (panel_len * 2)).max(1);
    let y_ptr = SendPtr(y.as_mut_ptr());
    let panels = n.div_ceil(NR);
    (0..panels.div_ceil(panels_per_task))
        .into_par_iter()
        .for_each(|task| {
            let y_ptr = &y_ptr;
            let mut edge = Vec::new();
            for p in task * panels_per_task..((task + 1) * panels_per_task).min(panels) {
                let panel = &w.data[p * panel_len..][..panel_len];
                let live = NR.min(n - p * NR);
                if live == NR {
                    // SAFETY: columns p·NR .. p·NR + NR of every row are inside y; tasks write
                    // disjoint panels.
                    unsafe { panel_product(level, x, m, k, panel, y_ptr.0.add(p * NR), n) };
                } else {
                    edge.clear();
                    edge.resize(m * NR, 0.0);
                    // SAFETY: `edge` is m × NR.
                    unsafe { panel_product(level, x, m, k, panel, edge.as_mut_ptr(), NR) };
                    for r in 0..m {
                        for j in 0..live {
                            // SAFETY: inside y, in this task's panel.
                            unsafe { *y_ptr.0.add(r * n + p * NR + j) = edge[r * NR + j] };
                        }
                    }
                }
            }
        });
}

/// Rows per micro-kernel call at `level`: as many as the registers hold accumulators for.
fn rows_per_call(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Avx512 => 12,
        SimdLevel::Avx2 => 4,
        SimdLevel::Scalar => 4,
    }
}

/// One panel's NR outputs for all m rows, added into `y` (row stride `ys`, zeroed by the caller).
///
/// # Safety
/// `y` addresses m rows of NR writable values at stride `ys`; `level` is supported.
unsafe fn panel_product(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    panel: &[u16],
    y: *mut f32,
    ys: usize,
) {
    let mr = rows_per_call(level);
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let w = panel[k0 * NR..].as_ptr();
        let mut r0 = 0;
        while r0 < m {
            let rows = mr.min(m - r0);
            let xp = x[r0 * k + k0 * rows..].as_ptr();
            // SAFETY: the group of rows r0.. r0 + rows is packed k-major from r0·k on (see
            // `pack_rows`); the panel holds kc k-rows from k0; y as the caller says.
            unsafe { micro(level, rows, xp, w, kc, y.add(r0 * ys), ys) };
            r0 += rows;
        }
    }
}

/// x (m × k, row-major) in groups of `mr` rows, each group k-major: row r0 + r's value at k is
/// at r0·k + k·rows + r, so a micro-kernel reads one contiguous stream whatever its rows.
fn pack_rows(x: &[f32], m: usize, k: usize, mr: usize) -> Vec<f32> {
    let mut packed = vec![0f32; m * k];
    packed
        .par_chunks_mut(mr * k)
        .enumerate()
        .for_each(|(g, group)| {
            let rows = group.len() / k;
            for r in 0..rows {
                let row = &x[(g * mr + r) * k..][..k];
                for (kk, &v) in row.iter().enumerate() {
                    group[kk * rows + r] = v;
                }
            }
        });
    packed
}

/// Dispatch on the level and a row count up to [`rows_per_call`].
///
/// # Safety
/// As [`micro_scalar`].
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    level: SimdLevel,
    rows: usize,
    x: *const f32,
    w: *const u16,
    kc: usize,
    y: *mut f32,
    ys: usize,
) {
    macro_rules! by_rows {
        ($f:ident, $($r:literal)*) => {
            match rows {
                $($r => $f::<$r>(x, w, kc, y, ys),)*
                _ => unreachable!("{rows} rows per micro-kernel call"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    use x86::{micro_avx2, micro_avx512};
    // SAFETY: forwarded to the caller.
    unsafe {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => by_rows!(micro_avx512, 1 2 3 4 5 6 7 8 9 10 11 12),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => by_rows!(micro_avx2, 1 2 3 4),
            _ => by_rows!(micro_scalar, 1 2 3 4),
        }
    }
}

/// The reference micro-kernel: `R` rows of x from the block's first k (packed: k-major, the
/// `R` values of one k side by side), the
/// panel's `kc` k-rows, the block sums added into `R` rows of `NR` outputs (stride `ys`).
///
/// # Safety
/// The pointers address what is described above.
unsafe fn micro_scalar<const R: usize>(
    x: *const f32,
    w: *const u16,
    kc: usize,
    y: *mut f32,
    ys: usize,
) {
    for r in 0..R {
        for j in 0..NR {
            let mut s = 0f32;
            for kk in 0..kc {
                // SAFETY: as the caller says.
                let (xv, wv) = unsafe { (*x.add(kk * R + r), *w.add(kk * NR + slot(j))) };
                s = xv.mul_add(f32::from_bits((wv as u32) << 16), s);
            }
            // SAFETY: as the caller says.
            unsafe { *y.add(r * ys + j) += s };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::super::few_rows::test_data::{assert_close, inputs, levels, reference};
    use super::*;

    #[test]
    fn widening_is_the_same_at_every_level() {
        let (n, k) = (64, 9);
        let w: Vec<bf16> = (0..n * k)
            .map(|i| bf16::from_f32(i as f32 * 0.37 - 50.0))
            .collect();
        let p = PackedBf16::pack(&w, n, k);
        for level in levels() {
            for live in [NR, 7] {
                let stride = 40;
                let mut out = vec![f32::NAN; k * stride];
                // SAFETY: k rows of `live` ≤ stride values.
                unsafe {
                    widen_columns(
                        level,
                        &p.data[k * NR..2 * k * NR],
                        live,
                        out.as_mut_ptr(),
                        stride,
                    )
                };
                for kk in 0..k {
                    for j in 0..stride {
                        let got = out[kk * stride + j];
                        if j < live {
                            assert_eq!(got, w[(NR + j) * k + kk].to_f32(), "{level:?}");
                        } else {
                            assert!(got.is_nan(), "{level:?}: column {j} written");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packing_round_trips() {
        for &(n, k) in &[(1, 1), (31, 5), (32, 3), (70, 33), (64, 0)] {
            let w: Vec<bf16> = (0..n * k).map(|i| bf16::from_f32(i as f32 - 7.0)).collect();
            let p = PackedBf16::pack(&w, n, k);
            assert_eq!(p.dims(), (n, k));
            assert_eq!(p.unpack(), w, "{n} × {k}");
            assert_eq!(p.nbytes(), n.div_ceil(NR) * NR * k * 2);
            for j0 in (0..n).step_by(NR) {
                let rows = (2 * NR).min(n - j0);
                let mut cols = vec![0f32; k * rows];
                // SAFETY: cols holds k · rows f32s.
                unsafe { p.widen_k_major_into(j0, rows, cols.as_mut_ptr()) };
                for j in 0..rows {
                    for kk in 0..k {
                        assert_eq!(cols[kk * rows + j], w[(j0 + j) * k + kk].to_f32());
                    }
                }
            }
        }
        let part = |n: usize, k: usize, seed: usize| -> Vec<bf16> {
            (0..n * k)
                .map(|i| bf16::from_f32((i * 31 + seed) as f32))
                .collect()
        };
        let (a, b, c) = (part(64, 3, 1), part(32, 3, 2), part(5, 3, 3));
        let pa = PackedBf16::pack(&a, 64, 3);
        let pb = PackedBf16::pack(&b, 32, 3);
        let pc = PackedBf16::pack(&c, 5, 3);
        let all = PackedBf16::concat(&[&pa, &pb, &pc]).unwrap();
        assert_eq!(all.dims(), (101, 3));
        assert_eq!(all.unpack(), [a, b, c.clone()].concat());
        assert!(
            PackedBf16::concat(&[&pc, &pa]).is_none(),
            "a partial panel inside"
        );
        assert!(
            PackedBf16::concat(&[&pa, &PackedBf16::pack(&c, 3, 5)]).is_none(),
            "k differs"
        );
    }

    /// Every level equals the scalar reference bit for bit, every row equals that row alone, and
    /// all are close to an f64 reference. Shapes cover a partial last panel, k below, at and
    /// across block sums, row counts below, at and above each level's rows per call.
    #[test]
    fn every_level_is_the_scalar_reference_exactly() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 70, 31),
            (2, 64, 256),
            (3, 65, 300),
            (9, 96, 517),
            (16, 40, 100),
            (17, 33, 40),
            (40, 64, 600),
            (5, 7, 0),
        ] {
            let (x, w) = inputs(m, n, k);
            let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
            let p = PackedBf16::pack(&wb, n, k);
            let mut want = vec![f32::NAN; m * n];
            matmul_packed(SimdLevel::Scalar, &x, m, &p, &mut want);
            assert_close(&want, &reference(&x, &w, (m, n, k)), 2e-6, "scalar");
            for level in levels() {
                let mut y = vec![f32::NAN; m * n];
                matmul_packed(level, &x, m, &p, &mut y);
                assert_eq!(
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{level:?} ({m}, {n}, {k})"
                );
                for r in [0, m / 2, m - 1] {
                    let mut one = vec![0f32; n];
                    matmul_packed(level, &x[r * k..(r + 1) * k], 1, &p, &mut one);
                    assert_eq!(one, y[r * n..(r + 1) * n], "{level:?} row {r} alone");
                }
            }
        }
    }
}
