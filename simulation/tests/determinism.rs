//! A seed replays its run exactly: the same trace hash (every scheduling decision and port call,
//! in order), the same violations; another seed takes another path.

use sequencer_simulation::{run, Options, Scenario};

#[test]
fn a_seed_replays_its_run_exactly() {
    for preset in ["rough", "everything"] {
        let sc = Scenario::named(preset).expect("preset");
        let a = run(7, &sc, Options::default());
        let b = run(7, &sc, Options::default());
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "{preset}: same seed, same trace"
        );
        assert_eq!(a.events, b.events);
        assert_eq!(a.virtual_ms, b.virtual_ms);
        assert_eq!(a.violations, b.violations);
        assert!(
            a.events > 1_000,
            "{preset}: a real run ({} events)",
            a.events
        );
        let c = run(8, &sc, Options::default());
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "{preset}: another seed, another run"
        );
    }
}
