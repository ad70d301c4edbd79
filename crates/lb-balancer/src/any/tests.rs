//! Unit tests of `AnyLoadBalancer`: every algorithm builds, selects and reports its name.

use lb_selection::{ConsistentConfig, MaglevConfig};

use super::*;

const ALL: [Algorithm; 9] = [
    Algorithm::RoundRobin,
    Algorithm::Random,
    Algorithm::P2c,
    Algorithm::LeastConn,
    Algorithm::Fnv,
    Algorithm::Consistent(ConsistentConfig {
        balance_factor: None,
    }),
    Algorithm::Hash,
    Algorithm::IpHash,
    Algorithm::Maglev(MaglevConfig {
        table_size: lb_selection::DEFAULT_TABLE_SIZE,
        balance_factor: None,
    }),
];

#[test]
fn every_algorithm_selects_among_its_backends() {
    for algorithm in ALL {
        let lb = AnyLoadBalancer::try_from_iter(["10.0.0.1:80", "10.0.0.2:80"], algorithm).unwrap();
        assert_eq!(lb.algorithm(), algorithm);
        assert_eq!(lb.backends().len(), 2, "{algorithm}");
        let first = lb.select(b"key", 8).unwrap();
        let other = lb.select_with(b"key", 8, |b| b != first.backend()).unwrap();
        assert_ne!(first.addr(), other.addr(), "{algorithm}");
        assert!(lb.health_monitor().is_none());
    }
}

#[test]
fn names_are_the_configuration_spellings() {
    let names: Vec<&str> = ALL.iter().map(Algorithm::name).collect();
    assert_eq!(
        names,
        [
            "round_robin",
            "random",
            "p2c",
            "least_conn",
            "fnv",
            "consistent",
            "hash",
            "ip_hash",
            "maglev"
        ]
    );
}

#[test]
fn setters_reach_the_balancer_inside() {
    let mut lb = AnyLoadBalancer::new(Arc::new(Static::default()), Algorithm::LeastConn);
    lb.set_initial_health(Health::Unhealthy);
    lb.set_health_check_frequency(Some(Duration::from_secs(3)));
    lb.set_update_frequency(Some(Duration::from_secs(5)));
    lb.set_discovered(Discovered::new(
        [Backend::parse("10.0.0.1:80").unwrap()]
            .into_iter()
            .collect(),
    ));
    assert_eq!(lb.backends()[0].state().health(), Health::Unhealthy);
    assert_eq!(lb.health_check_frequency(), Some(Duration::from_secs(3)));
    assert_eq!(lb.update_frequency(), Some(Duration::from_secs(5)));
    assert!(lb.select(b"", 8).is_none(), "unhealthy until checked");
}
