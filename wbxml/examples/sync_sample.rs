//! Writes the benchmark's large Sync response to a file:
//! `cargo run --release -p eas-wbxml --example sync_sample -- OUT.wbxml [ITEMS]`.

#[path = "../benches/sync_sample.rs"]
mod sync_sample;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: sync_sample OUT.wbxml [ITEMS]");
    let items = args.next().map_or(sync_sample::ITEMS, |n| {
        n.parse().expect("ITEMS is a number")
    });
    std::fs::write(&path, sync_sample::sync_response(items)).expect("cannot write the sample");
}
