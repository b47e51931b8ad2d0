//! PIL's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB, reproduced operation for
//! operation (Pillow `Resample.c`): per-axis convolution with the Keys cubic (a = −0.5) whose
//! support widens by the scale factor when shrinking, coefficients normalised and quantised
//! to 22-bit fixed point, horizontal pass first with an 8-bit intermediate image, then the
//! vertical pass. The official processor resizes PIL images this way (torchvision's `resize`
//! on a PIL image calls it), and general-purpose resizers differ from it by several levels.

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output index: (first input index, number of taps) and the fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    const SUPPORT: f64 = 2.0;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, &kx) in k.iter().enumerate().take(xmax) {
            let w = if ww != 0.0 { kx / ww } else { kx };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resize an interleaved RGB image (`h×w×3`) to `out_w×out_h`.
pub fn resize_bicubic_rgb(data: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    assert_eq!(data.len(), w * h * 3, "RGB buffer size");
    let horiz = precompute(w, out_w);
    let vert = precompute(h, out_h);
    let need_h = out_w != w;
    let need_v = out_h != h;
    let half = 1i32 << (PRECISION_BITS - 1);

    // Horizontal pass over the rows the vertical pass will read.
    let (row0, row1) = if need_v {
        let first = vert.bounds[0].0;
        let (lmin, lcount) = vert.bounds[out_h - 1];
        (first, lmin + lcount)
    } else {
        (0, h)
    };
    let (tmp, tmp_w) = if need_h {
        let rows = row1 - row0;
        let mut tmp = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let src = &data[(y + row0) * w * 3..(y + row0 + 1) * w * 3];
            for xx in 0..out_w {
                let (xmin, n) = horiz.bounds[xx];
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + n];
                let mut ss = [half; 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &src[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += p[c] as i32 * kx;
                    }
                }
                let o = (y * out_w + xx) * 3;
                for c in 0..3 {
                    tmp[o + c] = clip8(ss[c]);
                }
            }
        }
        (tmp, out_w)
    } else {
        (data[row0 * w * 3..row1 * w * 3].to_vec(), w)
    };
    if !need_v {
        return tmp;
    }
    let mut out = vec![0u8; out_h * tmp_w * 3];
    for yy in 0..out_h {
        let (ymin, n) = vert.bounds[yy];
        let ymin = ymin - row0;
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        for xx in 0..tmp_w {
            let mut ss = [half; 3];
            for (y, &ky) in k.iter().enumerate() {
                let p = &tmp[((y + ymin) * tmp_w + xx) * 3..((y + ymin) * tmp_w + xx) * 3 + 3];
                for c in 0..3 {
                    ss[c] += p[c] as i32 * ky;
                }
            }
            let o = (yy * tmp_w + xx) * 3;
            for c in 0..3 {
                out[o + c] = clip8(ss[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant() {
        let img = vec![77u8; 13 * 7 * 3];
        for (ow, oh) in [(5, 3), (40, 21), (13, 2), (1, 1)] {
            assert!(resize_bicubic_rgb(&img, 13, 7, ow, oh)
                .iter()
                .all(|&v| v == 77));
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(80, 64), (10, 64), (1000, 14), (7, 7)] {
            let c = precompute(i, o);
            for xx in 0..o {
                let s: i32 = c.weights[xx * c.ksize..xx * c.ksize + c.bounds[xx].1]
                    .iter()
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.bounds[xx].1 as i32,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}
