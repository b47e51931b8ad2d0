use super::super::few_rows::test_data::{assert_close, inputs, reference};
use super::*;

/// A q4_K weight (n × k) quantized from the test weights, and those weights dequantized.
fn weight(n: usize, k: usize) -> (Vec<BlockQ4K>, Vec<f32>) {
    let (_, w) = inputs(1, n, k);
    let mut blocks = vec![BlockQ4K::zeros(); n * k / QK_K];
    BlockQ4K::from_float(&w, &mut blocks);
    let mut dequantized = vec![0f32; n * k];
    BlockQ4K::to_float(&blocks, &mut dequantized);
    (blocks, dequantized)
}

fn levels() -> Vec<DotLevel> {
    let mut levels = vec![DotLevel::Scalar, DotLevel::Candle];
    if dot_level() == DotLevel::Avx512Vnni {
        levels.push(DotLevel::Avx512Vnni);
    }
    levels
}

#[test]
fn every_level_is_the_scalar_reference() {
    let (n, k) = (70, 512);
    let (w, _) = weight(n, k);
    for m in 1..=9 {
        let (x, _) = inputs(m, 1, k);
        let mut want = vec![0f32; m * n];
        matmul_few_rows(DotLevel::Scalar, &x, m, &w, (n, k), &mut want);
        for level in levels() {
            let mut got = vec![f32::NAN; m * n];
            matmul_few_rows(level, &x, m, &w, (n, k), &mut got);
            // The integer sums are exact at every level; only the f32 summation order differs.
            assert_close(&got, &want, 2e-6, &format!("{level:?} m={m}"));
        }
    }
}

#[test]
fn few_rows_follow_the_dequantized_product() {
    // What the q8_K rounding of the activations costs against the f32 product on the
    // dequantized weights (the few-row path's own error, on top of the format's).
    let (n, k) = (40, 768);
    let (w, wf) = weight(n, k);
    for m in [1, 2, 16] {
        // Pseudo-random activations: the periodic test pattern lines its q8_K rounding errors
        // up with the periodic test weights (4 % here), which random data does not.
        let mut state = 0x9e37_79b9_u32.wrapping_mul(m as u32 + 1);
        let x: Vec<f32> = (0..m * k)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as f32 / u32::MAX as f32 * 2.0 - 1.0
            })
            .collect();
        let mut got = vec![0f32; m * n];
        matmul_few_rows(dot_level(), &x, m, &w, (n, k), &mut got);
        let want = reference(&x, &wf, (m, n, k));
        let err: f32 = got.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum();
        let rel = (err / want.iter().map(|w| w * w).sum::<f32>()).sqrt();
        // 0.4-0.6 % relative RMS measured for candle's product (see kernels::linear's tests).
        eprintln!("m={m}: relative RMS {rel}");
        assert!(rel < 0.011, "m={m}: relative RMS {rel}");
    }
}

#[test]
fn dequantized_rows_are_candles_dequantization() {
    let (n, k) = (6, 512);
    let (w, wf) = weight(n, k);
    // Bit for bit at every level (the AVX-512 path where the CPU has it).
    let mut rows = vec![0f32; 3 * k];
    dequantize_rows_into(&w, k, 2, &mut rows);
    assert_eq!(rows, wf[2 * k..5 * k]);
}

#[test]
fn k_major_dequantization_is_the_transposed_row_major_one() {
    let (n, k) = (40, 512);
    let (w, wf) = weight(n, k);
    let mut scratch = Vec::new();
    // Rows 3..40: two full 16-row tiles and a partial one.
    let (j0, rows) = (3, 37);
    let mut dst = vec![f32::NAN; k * rows];
    // SAFETY: dst holds k · rows f32s.
    unsafe { dequantize_rows_k_major(&w, k, (j0, rows), &mut scratch, dst.as_mut_ptr()) };
    for j in 0..rows {
        for c in 0..k {
            assert_eq!(
                dst[c * rows + j].to_bits(),
                wf[(j0 + j) * k + c].to_bits(),
                "row {j}, column {c}"
            );
        }
    }
}

#[test]
fn blocks_are_checked() {
    let (w, _) = weight(4, 256);
    // SAFETY: viewing plain data as bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), std::mem::size_of_val(w.as_slice()))
    };
    assert_eq!(blocks(bytes, 4, 256).unwrap().len(), 4);
    assert!(blocks(bytes, 4, 512).is_err());
    assert!(blocks(bytes, 4, 200).is_err());
    assert!(blocks(&bytes[1..], 4, 256).is_err());
}
