//! When time passing alone can next change a lead (SPEC §6 `decay`): the time a tick could
//! first reach a stage, or move a stored figure by more than the refresh allows. Between
//! ticks engagement decays monotonically towards zero and windows only lose events, so each
//! comparison in a stage condition keeps its truth until a computable instant: engagement
//! crosses a threshold (from the half-life), or an event leaves a window. The earliest such
//! instant is when the lead must be visited; before it, a tick could change nothing a stage
//! depends on.

use crate::eval::LeadState;
use crate::program::{Expr, Pred, Program};
use crate::time::Micros;

/// The smallest engagement a stored figure shows (two decimals): once engagement is within
/// this of its limit, refreshing it changes no figure.
pub const SHOWN: f64 = 0.005;

/// When a tick should next visit the lead in `state` (evaluated at its clock): the earliest
/// time a stage not yet reached can start to hold, or `refresh` after the clock while the
/// stored engagement still shows a change (and once more when it stops showing one).
/// `None`: time passing can change nothing. Exact: a stage reached by time passing is
/// reached at the first tick at or after the instant its condition starts to hold, as when
/// every tick visits the lead; where a condition is beyond this analysis (engagement
/// compared with a trait, a window compared with engagement), the lead is visited at the
/// next tick.
pub fn next_wake(program: &Program, state: &LeadState, refresh: Micros) -> Option<Micros> {
    let clock = state.clock?;
    if !program.time_dependent {
        return None;
    }
    let decay = Decay::of(program, state, clock);
    let mut wake = Wake::default();
    // the stored figures, refreshed at the granularity, and once when they settle
    if let Some(d) = &decay {
        if (d.e0 - d.limit).abs() >= SHOWN {
            wake.at(clock.saturating_add(refresh.max(1)));
            wake.at_opt(d.crossing(d.limit + SHOWN.copysign(d.e0 - d.limit)));
        }
    }
    for (i, stage) in program.stages.iter().enumerate() {
        if state.reached.get(i).is_some_and(Option::is_some) {
            continue;
        }
        scan(
            program,
            state,
            decay.as_ref(),
            clock,
            &stage.when,
            &mut wake,
        );
    }
    wake.first
}

/// The earliest instant seen, after the clock.
#[derive(Default)]
struct Wake {
    first: Option<Micros>,
}

impl Wake {
    fn at(&mut self, t: Micros) {
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
    }

    fn at_opt(&mut self, t: Option<Micros>) {
        if let Some(t) = t {
            self.at(t);
        }
    }
}

/// Engagement's course from the clock: `e0 · 2^(-(t - t0)/h)`, towards `limit` (zero, or the
/// floor or cap the clamp holds it at).
struct Decay {
    e0: f64,
    t0: Micros,
    half_life: Micros,
    limit: f64,
}

impl Decay {
    fn of(program: &Program, state: &LeadState, clock: Micros) -> Option<Decay> {
        let half_life = program.half_life.filter(|h| *h > 0)?;
        let e0 = state.engagement;
        if !e0.is_finite() || e0 == 0.0 {
            return None;
        }
        let limit = if e0 > 0.0 {
            program.floor.map_or(0.0, |f| f.max(0.0))
        } else {
            program.cap.map_or(0.0, |c| c.min(0.0))
        };
        Some(Decay {
            e0,
            t0: clock,
            half_life,
            limit,
        })
    }

    /// The first instant engagement has passed `c` (strictly between the limit and `e0`),
    /// a microsecond late rather than early; `None` when it never does.
    fn crossing(&self, c: f64) -> Option<Micros> {
        let between = if self.e0 > 0.0 {
            c > self.limit && c < self.e0
        } else {
            c < self.limit && c > self.e0
        };
        if !between || c == 0.0 {
            return None;
        }
        let halves = (self.e0 / c).log2();
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let after = (halves * self.half_life as f64).ceil();
        if !after.is_finite() || !(0.0..=1e17).contains(&after) {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        Some(self.t0.saturating_add(after as Micros).saturating_add(1))
    }
}

/// A side of a comparison, as time passes: `k · engagement + c`, a window, or beyond this
/// analysis.
enum Side {
    Linear { k: f64, c: f64 },
    Window(usize),
    Unknown,
}

fn side(state: &LeadState, e: &Expr) -> Side {
    match e {
        Expr::Const(v) => v
            .as_f64()
            .map_or(Side::Unknown, |c| Side::Linear { k: 0.0, c }),
        Expr::Fit => Side::Linear {
            k: 0.0,
            c: state.fit,
        },
        Expr::Engagement => Side::Linear { k: 1.0, c: 0.0 },
        Expr::Score => Side::Linear {
            k: 1.0,
            c: state.fit,
        },
        Expr::Agg(i) => Side::Window(*i),
        // a trait or a property: constant between calls, but its value is not read here
        Expr::Trait(_) | Expr::Prop(_) => Side::Unknown,
    }
}

/// Adds to `wake` every instant a part of `p` can change its truth.
fn scan(
    program: &Program,
    state: &LeadState,
    decay: Option<&Decay>,
    clock: Micros,
    p: &Pred,
    wake: &mut Wake,
) {
    match p {
        Pred::Const(_) | Pred::Event(..) | Pred::Reached(_) => {}
        Pred::And(ps) | Pred::Or(ps) => {
            for p in ps {
                scan(program, state, decay, clock, p, wake);
            }
        }
        Pred::Not(p) => scan(program, state, decay, clock, p, wake),
        Pred::Cmp(_, a, b) => compared(program, state, decay, clock, a, b, wake),
        Pred::Between(x, lo, hi) => {
            compared(program, state, decay, clock, x, lo, wake);
            compared(program, state, decay, clock, x, hi, wake);
        }
        Pred::Matches(e, _) | Pred::In(e, _) | Pred::Exists(e) | Pred::Truthy(e) => {
            // a test of engagement's text or truth: beyond this analysis
            let decaying =
                decay.is_some() && matches!(side(state, e), Side::Linear { k, .. } if k != 0.0);
            if decaying || matches!(side(state, e), Side::Window(_)) {
                wake.at(clock.saturating_add(1));
            }
        }
    }
}

/// Adds the instants a comparison of `a` and `b` can turn.
fn compared(
    program: &Program,
    state: &LeadState,
    decay: Option<&Decay>,
    clock: Micros,
    a: &Expr,
    b: &Expr,
    wake: &mut Wake,
) {
    let (sa, sb) = (side(state, a), side(state, b));
    if let (Side::Linear { k: ka, c: ca }, Side::Linear { k: kb, c: cb }) = (&sa, &sb) {
        // k · engagement == cb - ca is where the comparison can turn
        let k = ka - kb;
        if let Some(d) = decay.filter(|_| k != 0.0) {
            wake.at_opt(d.crossing((cb - ca) / k));
        }
        return;
    }
    let decaying = |s: &Side| decay.is_some() && matches!(s, Side::Linear { k, .. } if *k != 0.0);
    for s in [&sa, &sb] {
        if let Side::Window(i) = s {
            wake.at_opt(leaves(program, state, clock, *i));
        }
    }
    // engagement against a trait or a window: visit at the next tick
    if decaying(&sa) || decaying(&sb) {
        wake.at(clock.saturating_add(1));
    }
}

/// The first instant after `clock` an event leaves window `i` (its value stops counting).
fn leaves(program: &Program, state: &LeadState, clock: Micros, i: usize) -> Option<Micros> {
    let within = program.aggregates.get(i)?.within;
    state
        .aggregates
        .get(i)?
        .iter()
        .map(|(at, _)| at.saturating_add(within))
        // an event at `at` counts while `at > now - within`: it is out at `at + within`
        .filter(|t| *t > clock)
        .min()
}
