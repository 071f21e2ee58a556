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
//! failing seed of each, time per seed. Exits 1 when an invariant outside
//! `KNOWN_DEFECTS` broke.

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use sequencer_simulation::scenario::PRESETS;
use sequencer_simulation::{run, Options, Scenario, KNOWN_DEFECTS};

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
}

fn main() {
    let args = Args::parse();
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
        let mut first: BTreeMap<&'static str, (u64, usize)> = BTreeMap::new();
        let t0 = Instant::now();
        for &seed in &seeds {
            let t = Instant::now();
            let r = run(seed, &sc, Options { log: args.trace });
            total += 1;
            println!("{} [{:.2} s]", r.summary(), t.elapsed().as_secs_f64());
            if args.trace {
                for l in &r.log {
                    println!("  | {l}");
                }
            }
            let show = if args.verbose || args.seed.is_some() {
                usize::MAX
            } else {
                3
            };
            for v in r.violations.iter().take(show) {
                println!("    {v}");
            }
            if r.violations.len() > show {
                println!("    … {} more (--verbose)", r.violations.len() - show);
            }
            for (inv, n) in r.broken() {
                let e = first.entry(inv).or_insert((seed, 0));
                e.1 += 1;
                let _ = n;
                if !KNOWN_DEFECTS.iter().any(|(k, _)| *k == inv) {
                    unknown = true;
                }
            }
        }
        let per = t0.elapsed().as_secs_f64() / seeds.len().max(1) as f64;
        println!("== {name}: {} seeds, {per:.2} s per seed", seeds.len());
        for (inv, (seed, n)) in first {
            let known = KNOWN_DEFECTS
                .iter()
                .find(|(k, _)| *k == inv)
                .map_or("NEW", |(_, item)| item);
            println!(
                "   {inv}: {n} of {} seeds (first: --scenario {name} --seed {seed}) [{known}]",
                seeds.len()
            );
        }
    }
    println!("{total} runs in {:.1} s", started.elapsed().as_secs_f64());
    if unknown {
        std::process::exit(1);
    }
}
