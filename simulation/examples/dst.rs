//! Runs the deterministic simulation over many seeds, or replays one.
//!
//! ```text
//! cargo run --release -p sequencer-simulation --example dst -- --seeds 500            # every preset
//! cargo run --release -p sequencer-simulation --example dst -- --scenario rough --seeds 200 --start 1000
//! cargo run --release -p sequencer-simulation --example dst -- --scenario rough --seed 1042 --verbose
//! cargo run --release -p sequencer-simulation --example dst -- --scenario rough --seed 1042 --trace > trace.txt
//! ```
//!
//! Prints one line per seed, every violation of a failing seed (all of them with `--verbose`,
//! else the first three), and a summary: runs, seeds with violations by invariant, the first
//! failing seed of each (and the defect of `defects::DEFECTS` it is, or NEW), time per seed.
//! Exits 1 when a violation is no open defect.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use sequencer_simulation::defects::known;
use sequencer_simulation::scenario::PRESETS;
use sequencer_simulation::{run, Options, Scenario};

/// `println!` that ends the program quietly when stdout is closed (`| head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of the sequencer's deployment")]
struct Args {
    /// A preset (calm, rough, hostile, big-project, operational, poison, retention, everything);
    /// all of them when left out.
    #[arg(long)]
    scenario: Option<String>,
    /// Seeds per scenario.
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    start: u64,
    /// Replay this one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print every violation in full.
    #[arg(long)]
    verbose: bool,
    /// Print the run's trace (one line per scheduling event and port call).
    #[arg(long)]
    trace: bool,
    /// For each defect of `defects::DEFECTS`, the first of `--seeds` seeds (from `--start`) of
    /// its preset that shows it.
    #[arg(long)]
    defects: bool,
}

fn main() {
    let args = Args::parse();
    if args.defects {
        find_defects(&args);
        return;
    }
    let names: Vec<String> = match &args.scenario {
        Some(s) => vec![s.clone()],
        None => PRESETS.iter().map(|s| s.to_string()).collect(),
    };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.start..args.start + args.seeds).collect(),
    };
    let mut unknown = false;
    let mut total = 0u64;
    let started = Instant::now();
    for name in &names {
        let Some(sc) = Scenario::named(name) else {
            eprintln!("unknown scenario {name}; presets: {PRESETS:?}");
            std::process::exit(2);
        };
        // (invariant, defect or NEW) → (first seed, seeds showing it)
        let mut first: BTreeMap<(&'static str, String), (u64, usize)> = BTreeMap::new();
        let t0 = Instant::now();
        for &seed in &seeds {
            let t = Instant::now();
            let r = run(seed, &sc, Options { log: args.trace });
            total += 1;
            say!("{} [{:.2} s]", r.summary(), t.elapsed().as_secs_f64());
            if args.trace {
                for l in &r.log {
                    say!("  | {l}");
                }
            }
            let show = if args.verbose || args.seed.is_some() {
                usize::MAX
            } else {
                3
            };
            for v in r.violations.iter().take(show) {
                say!("    ({}) {v}", tag(v));
            }
            if r.violations.len() > show {
                say!("    … {} more (--verbose)", r.violations.len() - show);
            }
            let mut seen = std::collections::BTreeSet::new();
            for v in &r.violations {
                let t = tag(v);
                if t == "NEW" {
                    unknown = true;
                }
                if seen.insert((v.invariant, t.clone())) {
                    first.entry((v.invariant, t)).or_insert((seed, 0)).1 += 1;
                }
            }
        }
        let per = t0.elapsed().as_secs_f64() / seeds.len().max(1) as f64;
        say!("== {name}: {} seeds, {per:.2} s per seed", seeds.len());
        for ((inv, t), (seed, n)) in first {
            say!(
                "   {inv} [{t}]: {n} of {} seeds (first: --scenario {name} --seed {seed})",
                seeds.len()
            );
        }
    }
    say!("{total} runs in {:.1} s", started.elapsed().as_secs_f64());
    if unknown {
        std::process::exit(1);
    }
}

fn tag(v: &sequencer_simulation::Violation) -> String {
    known(v).map_or("NEW".to_string(), |d| format!("{} {}", d.item, d.id))
}

fn find_defects(args: &Args) {
    use sequencer_simulation::defects::DEFECTS;
    let mut runs: BTreeMap<(&str, u64), Vec<sequencer_simulation::Violation>> = BTreeMap::new();
    for d in DEFECTS {
        let sc = Scenario::named(d.scenario).expect("preset");
        let mut found = None;
        for seed in std::iter::once(d.seed).chain(args.start..args.start + args.seeds) {
            let v = runs
                .entry((d.scenario, seed))
                .or_insert_with(|| run(seed, &sc, Options::default()).violations);
            if v.iter().any(|v| d.matches(v)) {
                found = Some(seed);
                break;
            }
        }
        let shown = match found {
            Some(s) if s == d.seed => "   (the table's seed)".to_string(),
            Some(_) => format!("   (the table says {})", d.seed),
            None => String::new(),
        };
        say!(
            "{:<32} {:<5} {:<12} {}{}",
            d.id,
            d.item,
            d.scenario,
            found.map_or(format!("not shown in {} seeds", args.seeds), |s| format!(
                "seed {s}"
            )),
            shown
        );
    }
}
