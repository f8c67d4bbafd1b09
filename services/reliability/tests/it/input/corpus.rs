//! The fuzz corpus (`fuzz/corpus/<target>/`) replayed through the fuzz targets' bodies.

#[test]
fn the_fuzz_corpus_replays_through_the_fuzz_targets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    let mut per_target = Vec::new();
    for (name, target) in roaming_reliability::fuzz_targets::TARGETS {
        let dir = root.join(name);
        let mut n = 0;
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the corpus is committed)", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
            n += 1;
        }
        assert!(n > 0, "{name}: empty corpus");
        per_target.push(format!("{name} {n}"));
        total += n;
    }
    // The seeds were sealed by fuzz/seed_corpus.py: the genuine ones must open, or the corpus
    // would only exercise the MAC check.
    let sealer = roaming_reliability::fuzz_targets::sealer();
    for (target, file) in [
        ("history_cursor", "genuine_backward"),
        ("list_cursor", "genuine"),
    ] {
        let text = std::fs::read_to_string(root.join(target).join(file)).unwrap();
        let opened = if target == "history_cursor" {
            roaming_history::cursor::open(&sealer, &text)
        } else {
            roaming_conversation::cursor::open(&sealer, &text)
        };
        assert!(opened.is_ok(), "{target}/{file}: {opened:?}");
    }
    println!(
        "input[fuzz corpus]: {total} inputs replayed, 0 failures ({})",
        per_target.join(", ")
    );
}
