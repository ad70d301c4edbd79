//! Least connections: the usable backend with the fewest in-flight requests per unit of
//! weight.
//!
//! As nginx's `least_conn` (`ngx_http_upstream_least_conn_module.c`): the backend with the
//! smallest `in_flight / weight` wins, and ties are broken by weighted round robin. Here the
//! scan starts at the backend that nginx's smooth weighted round robin would pick next and
//! keeps the first strictly better one, so with no load (all tied) the sequence is exactly
//! smooth weighted round robin and the shares follow the weights.
//!
//! Unlike the other algorithms, the first pick reads each backend's usability, so an
//! unhealthy backend with no load does not attract every request (the caller still checks
//! each candidate). Cost: one pass over the set per request, O(N) atomic loads, as in nginx;
//! for very large sets prefer [`P2c`](crate::P2c), which approximates it in O(1).

use lb_core::BackendSet;

use crate::candidates::{Candidates, Picks};
use crate::p2c::less_loaded;
use crate::{BackendSelection, RoundRobin};

/// Least connections with weighted round-robin tie-breaking; see the [module docs](self).
#[derive(Debug)]
pub struct LeastConn {
    rr: RoundRobin,
    backends: BackendSet,
}

impl BackendSelection for LeastConn {
    type Config = ();
    type Iter<'a> = Candidates<'a, Picks>;

    fn build(backends: &BackendSet, config: &()) -> Self {
        Self {
            rr: RoundRobin::build(backends, config),
            backends: backends.clone(),
        }
    }

    #[inline]
    fn iter<'a>(&'a self, _key: &[u8]) -> Self::Iter<'a> {
        let Some((tick, start)) = self.rr.next_pick() else {
            return Candidates::empty(Picks::one(0));
        };
        let n = self.backends.len();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let b = &self.backends[i];
            if !b.state().is_usable() {
                continue;
            }
            match best {
                Some(cur) if !less_loaded(b, &self.backends[cur]) => {}
                _ => best = Some(i),
            }
        }
        let first = best.unwrap_or(start);
        Candidates::new(
            &self.backends,
            Picks::one(first),
            1,
            RoundRobin::fallback_start(tick, first, n),
        )
    }
}

#[cfg(test)]
mod tests {
    use lb_core::Health;

    use super::*;
    use crate::round_robin::tests::set;

    #[test]
    fn fewest_in_flight_wins_and_ties_rotate() {
        let s = set(&[1, 1, 1]);
        let lc = LeastConn::build(&s, &());
        let _g0 = s[0].begin_request();
        let _g1 = s[0].begin_request();
        let _g2 = s[1].begin_request();
        for _ in 0..6 {
            assert_eq!(lc.iter(b"").next().unwrap(), &s[2]);
        }
        let _g3 = s[2].begin_request();
        // Now 2 / 1 / 1: backends 1 and 2 tie and alternate.
        let picks: Vec<_> = (0..4)
            .map(|_| lc.iter(b"").next().unwrap().clone())
            .collect();
        assert!(picks.iter().all(|b| *b != s[0]));
        assert!(picks.contains(&s[1]) && picks.contains(&s[2]));
    }

    #[test]
    fn with_no_load_it_is_smooth_weighted_round_robin() {
        let s = set(&[5, 1, 1]);
        let lc = LeastConn::build(&s, &());
        let seq: String = (0..7)
            .map(|_| {
                let b = lc.iter(b"").next().unwrap();
                (b'a' + s.iter().position(|x| x == b).unwrap() as u8) as char
            })
            .collect();
        assert_eq!(seq, "aabacaa");
    }

    #[test]
    fn an_idle_unhealthy_backend_does_not_attract_traffic() {
        let s = set(&[1, 1]);
        let lc = LeastConn::build(&s, &());
        s[0].state().set_health(Health::Unhealthy);
        let _busy = s[1].begin_request();
        for _ in 0..4 {
            assert_eq!(lc.iter(b"").next().unwrap(), &s[1]);
        }
    }
}
