//! Each defect of `defects::DEFECTS` is shown by its seed while it is open, and no longer once it
//! is marked fixed: the proof a fix works, and that reverting it is caught.

use sequencer_simulation::defects::DEFECTS;
use sequencer_simulation::{run, Options, Scenario};

#[test]
fn every_defect_is_shown_by_its_seed_until_fixed() {
    let mut wrong = Vec::new();
    for d in DEFECTS {
        let sc = Scenario::named(d.scenario).expect("preset");
        let r = run(d.seed, &sc, Options::default());
        let shown = r.violations.iter().any(|v| d.matches(v));
        if shown == d.fixed {
            wrong.push(format!(
                "{} ({}): {} with --scenario {} --seed {}",
                d.id,
                d.item,
                if d.fixed {
                    "fixed, but still shown"
                } else {
                    "open, but not shown"
                },
                d.scenario,
                d.seed
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
