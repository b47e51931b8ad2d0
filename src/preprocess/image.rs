//! Image preprocessing of the official `VLMImageProcessor`: resize the long side to
//! `image_size` with PIL-compatible bicubic (antialiased) filtering, pad to a centred square
//! on the background colour, rescale by 1/255 and normalise with the checkpoint's mean/std.

use crate::error::{Error, Result};
use crate::loading::ImageProcessorConfig;

/// Largest image side we accept, before resizing (keeps a hostile header from allocating GBs).
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Most memory the decoder may allocate for one image's pixels (the `image` crate's default).
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// The message for an image the decoder refused as too large: says which limit and its value.
fn too_large_message(bytes: &[u8], limit: &image::error::LimitError) -> String {
    let size = RgbImage::header_size(bytes)
        .map(|(w, h)| format!("image is {w}x{h}"))
        .unwrap_or_else(|| "image is too large".into());
    let mib = MAX_DECODE_BYTES / (1024 * 1024);
    match limit.kind() {
        image::error::LimitErrorKind::DimensionError => {
            format!("{size}; sides larger than {MAX_IMAGE_SIDE} pixels are not accepted")
        }
        _ => format!(
            "{size}; decoding it would need more than the limit of {mib} MiB for the decoded \
             pixels (about {} megapixels of 8-bit RGB); downscale it first",
            MAX_DECODE_BYTES / 3 / 1_000_000
        ),
    }
}

/// An 8-bit RGB image, row-major `H×W×3`.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Image(format!("image is empty ({width}x{height})")));
        }
        if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
            return Err(Error::Image(format!(
                "image is {width}x{height}; sides larger than {MAX_IMAGE_SIDE} pixels are not accepted"
            )));
        }
        if data.len() != width as usize * height as usize * 3 {
            return Err(Error::Image(format!(
                "RGB buffer has {} bytes, expected {width}x{height}x3 = {}",
                data.len(),
                width as usize * height as usize * 3
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Decode an encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF) and convert it to RGB the way
    /// PIL's `convert("RGB")` does: alpha is dropped, grey is replicated, 16-bit is scaled.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Image("image data is empty (0 bytes)".into()));
        }
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::Image(format!("cannot read image data: {e}")))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        if reader.format().is_none() {
            return Err(Error::Image(
                "unrecognised image format (expected PNG, JPEG, WebP, GIF, BMP or TIFF)".into(),
            ));
        }
        let img = reader.decode().map_err(|e| match e {
            image::ImageError::Limits(limit) => Error::Image(too_large_message(bytes, &limit)),
            e => Error::Image(format!("cannot decode image: {e}")),
        })?;
        let rgb = img.to_rgb8();
        Self::new(rgb.width(), rgb.height(), rgb.into_raw())
    }

    /// The size of an encoded image from its header alone (no pixels decoded), if readable.
    fn header_size(bytes: &[u8]) -> Option<(u32, u32)> {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .ok()?;
        reader.no_limits();
        reader.into_dimensions().ok()
    }

    pub fn open(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::not_found("image file", path),
            _ => Error::Image(format!("cannot read {}: {e}", path.display())),
        })?;
        Self::decode(&bytes).map_err(|e| match e {
            Error::Image(msg) => Error::Image(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// PIL `Image.resize((width, height), BICUBIC)`, bit for bit (see [`super::resize`]).
    pub fn resize_bicubic(&self, width: u32, height: u32) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::Image(format!("cannot resize to {width}x{height}")));
        }
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let data = super::resize::resize_bicubic_rgb(
            &self.data,
            self.width as usize,
            self.height as usize,
            width as usize,
            height as usize,
        );
        Self::new(width, height, data)
    }
}

/// The image half of the official processor.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    pub image_size: usize,
    pub min_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub background: [u8; 3],
}

impl ImageProcessor {
    pub fn new(cfg: &ImageProcessorConfig) -> Self {
        let f = |v: &Vec<f64>| [v[0] as f32, v[1] as f32, v[2] as f32];
        Self {
            image_size: cfg.image_size,
            min_size: cfg.min_size,
            mean: f(&cfg.image_mean),
            std: f(&cfg.image_std),
            rescale_factor: cfg.rescale_factor,
            do_normalize: cfg.do_normalize,
            background: cfg.background(),
        }
    }

    /// Target `(width, height)` with the long side at `image_size`:
    /// `max(int(side / long_side * image_size), min_size)`, computed in f64 like Python.
    pub fn target_size(&self, width: u32, height: u32) -> (u32, u32) {
        let m = width.max(height) as f64;
        let s = self.image_size as f64;
        let side = |x: u32| (((x as f64 / m) * s) as usize).max(self.min_size) as u32;
        (side(width), side(height))
    }

    /// Resize so the long side is `image_size` (the step before padding).
    pub fn resize(&self, img: &RgbImage) -> Result<RgbImage> {
        let (w, h) = self.target_size(img.width, img.height);
        img.resize_bicubic(w, h)
    }

    /// Pad to a square centred on the background colour (official `expand2square`).
    pub fn expand_to_square(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = (img.width as usize, img.height as usize);
        if w == h {
            return img.clone();
        }
        let side = w.max(h);
        let (x0, y0) = if w > h {
            (0, (w - h) / 2)
        } else {
            ((h - w) / 2, 0)
        };
        let mut data = Vec::with_capacity(side * side * 3);
        for _ in 0..side * side {
            data.extend_from_slice(&self.background);
        }
        for y in 0..h {
            let src = &img.data[y * w * 3..(y + 1) * w * 3];
            let start = ((y + y0) * side + x0) * 3;
            data[start..start + w * 3].copy_from_slice(src);
        }
        RgbImage {
            width: side as u32,
            height: side as u32,
            data,
        }
    }

    /// Rescale and normalise an already-square image into CHW f32 pixel values.
    pub fn normalize(&self, img: &RgbImage) -> Vec<f32> {
        let n = img.width as usize * img.height as usize;
        let mut out = vec![0f32; 3 * n];
        for (i, px) in img.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // transformers' `rescale` multiplies in float64 and stores float32.
                let mut x = (px[c] as f64 * self.rescale_factor) as f32;
                if self.do_normalize {
                    x = (x - self.mean[c]) / self.std[c];
                }
                out[c * n + i] = x;
            }
        }
        out
    }

    /// The whole pipeline: `(3, image_size, image_size)` pixel values, CHW, row-major.
    pub fn preprocess(&self, img: &RgbImage) -> Result<Vec<f32>> {
        let square = self.expand_to_square(&self.resize(img)?);
        if square.width as usize != self.image_size || square.height as usize != self.image_size {
            return Err(Error::Image(format!(
                "internal: preprocessed image is {}x{}, expected {}",
                square.width, square.height, self.image_size
            )));
        }
        Ok(self.normalize(&square))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(size: usize) -> ImageProcessor {
        ImageProcessor {
            image_size: size,
            min_size: 14,
            mean: [0.5; 3],
            std: [0.5; 3],
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            background: [127; 3],
        }
    }

    #[test]
    fn target_size_keeps_aspect_and_floors() {
        let p = processor(384);
        assert_eq!(p.target_size(800, 600), (384, 288));
        assert_eq!(p.target_size(600, 800), (288, 384));
        assert_eq!(p.target_size(10000, 10), (384, 14));
        assert_eq!(p.target_size(80, 48), (384, 230));
    }

    #[test]
    fn square_padding_is_centred() {
        let p = processor(4);
        let img = RgbImage::new(4, 2, vec![255; 4 * 2 * 3]).unwrap();
        let sq = p.expand_to_square(&img);
        assert_eq!((sq.width, sq.height), (4, 4));
        let row = |y: usize| sq.data[y * 12];
        assert_eq!([row(0), row(1), row(2), row(3)], [127, 255, 255, 127]);
        let px = p.normalize(&sq);
        assert!((px[0] - (127.0 / 255.0 - 0.5) / 0.5).abs() < 1e-7);
        assert_eq!(px[4], 1.0);
    }

    #[test]
    fn bad_images_are_errors() {
        assert!(matches!(RgbImage::new(0, 3, vec![]), Err(Error::Image(_))));
        assert!(matches!(RgbImage::decode(b""), Err(Error::Image(_))));
        assert!(matches!(
            RgbImage::decode(b"not an image at all"),
            Err(Error::Image(_))
        ));
    }
}
