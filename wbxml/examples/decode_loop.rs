//! In-process timing of our WBXML -> XML conversion and of decoding into the element tree, the
//! counterpart of `benches/libwbxml_loop.c`. Prints, per file: path, bytes, ms per iteration and
//! MB/s for WBXML -> XML, then the same for WBXML -> tree.
//! `cargo run --release -p eas-wbxml --example decode_loop -- ITERATIONS FILE...`

use std::time::Instant;

use eas_wbxml::{Element, Limits};

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: decode_loop ITERATIONS FILE...");
    for path in args {
        let bytes = std::fs::read(&path).expect("cannot read input");
        let per_iteration = |f: &dyn Fn()| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_secs_f64() / f64::from(iterations)
        };
        let xml = per_iteration(&|| {
            std::hint::black_box(eas_wbxml::xml::wbxml_to_xml(&bytes, Limits::default()).unwrap());
        });
        let tree = per_iteration(&|| {
            std::hint::black_box(Element::decode(&bytes).unwrap());
        });
        let mbs = |secs: f64| bytes.len() as f64 / secs / 1e6;
        println!(
            "{path}\t{}\t{:.3}\t{:.1}\t{:.3}\t{:.1}",
            bytes.len(),
            xml * 1e3,
            mbs(xml),
            tree * 1e3,
            mbs(tree)
        );
    }
}
