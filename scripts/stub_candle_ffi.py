"""Regenerate third_party/candle-kernels/src/ffi.rs from upstream candle-kernels' ffi.rs.

    python scripts/stub_candle_ffi.py UPSTREAM/src/ffi.rs third_party/candle-kernels/src/ffi.rs

Keeps every launcher's signature (as `pub unsafe extern "C" fn`) with a body that aborts with a
message: the kernels behind them are not built (third_party/candle-kernels/README.janus-rs.md).
"""
import re
import sys

src = open(sys.argv[1]).read()
body = src[src.index('extern "C" {') + len('extern "C" {'): src.rindex("}")]
# the cutile-only launcher (feature off in janus-rs)
body = re.sub(r'#\[cfg\(feature = "cutile"\)\]\s*pub fn candle_launch_moe_align\(.*?\)\s*->\s*i32;', "", body, flags=re.S)
fns = re.findall(r"pub fn (\w+)\((.*?)\)\s*(->\s*[\w:]+)?\s*;", body, flags=re.S)
out = ['''//! janus-rs patch: candle-kernels 0.11.1's GGUF MMQ/MMVQ and MoE launchers, without their
//! kernels. The signatures are upstream's (`extern "C"`, so candle-core and candle-nn compile
//! and link unchanged); calling one aborts with a message instead of running a kernel that
//! was never built. janus-rs never calls them (see build.rs).
#![allow(clippy::too_many_arguments, unused_variables, non_snake_case)]
use core::ffi::c_void;

#[cold]
fn not_built(name: &str) -> ! {
    eprintln!(
        "candle-kernels (janus-rs build): `{name}` belongs to the GGUF MMQ/MoE kernels, which \\
         this build leaves out; use candle_core::quantized::cuda::set_force_dmmv(true)"
    );
    std::process::abort()
}
''']
for name, args, ret in fns:
    args = re.sub(r"//[^\n]*", "", args)
    args = ", ".join(a.strip() for a in args.split(",") if a.strip())
    ret = (" " + ret.strip()) if ret else ""
    out.append(f'\npub unsafe extern "C" fn {name}({args}){ret} {{\n    not_built("{name}")\n}}\n')
open(sys.argv[2], "w").write("".join(out))
print(len(fns), "stubs written to", sys.argv[2])
