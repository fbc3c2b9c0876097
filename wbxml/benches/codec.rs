//! Codec throughput on a realistic large Sync response (`sync_sample.rs`), in bytes of WBXML
//! per second. Run with `cargo bench -p eas-wbxml`; figures go in `docs/benchmarks.md`.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use eas_wbxml::{Element, Limits, Reader, Writer};

mod sync_sample;

fn codec(c: &mut Criterion) {
    let bytes = sync_response_checked();
    let tree = Element::decode(&bytes).unwrap();
    let mut g = c.benchmark_group("sync-response-200");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("decode-events", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&bytes)).unwrap();
            let mut n = 0usize;
            while let Some(_event) = r.next().unwrap() {
                n += 1;
            }
            n
        })
    });
    g.bench_function("decode-tree", |b| {
        b.iter(|| Element::decode(black_box(&bytes)).unwrap())
    });
    g.bench_function("encode-tree", |b| b.iter(|| black_box(&tree).encode()));
    g.bench_function("encode-stream", |b| {
        b.iter(|| {
            let mut w = Writer::new(Vec::with_capacity(bytes.len())).unwrap();
            sync_sample::write_sync_response(&mut w, sync_sample::ITEMS).unwrap();
            w.finish().unwrap()
        })
    });
    g.bench_function("tree-to-xml", |b| {
        b.iter(|| eas_wbxml::to_xml(black_box(&tree)))
    });
    g.bench_function("wbxml-to-xml", |b| {
        b.iter(|| eas_wbxml::xml::wbxml_to_xml(black_box(&bytes), Limits::default()).unwrap())
    });
    g.finish();
}

fn sync_response_checked() -> Vec<u8> {
    let bytes = sync_sample::sync_response(sync_sample::ITEMS);
    eprintln!(
        "sync response: {} bytes, {} items",
        bytes.len(),
        sync_sample::ITEMS
    );
    bytes
}

criterion_group!(benches, codec);
criterion_main!(benches);
