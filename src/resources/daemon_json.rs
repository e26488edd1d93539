//! daemon.json for dockerd, from the plan's daemon settings and the operator's defaults. The MTU
//! is not here: it is passed as flags, because its default is only known inside the pod.

use crate::crd::DaemonSpec;

/// Default bridge of the engine: 198.18.0.0/15 is reserved for benchmarking (RFC 2544), so it rarely
/// collides with VPCs, unlike Docker's own 172.17.0.0/16.
pub const DEFAULT_BIP: &str = "198.18.0.1/24";
/// Default pool for networks users create (compose networks).
pub const DEFAULT_POOL_BASE: &str = "198.18.128.0/17";
/// Prefix length of each network carved from the default pool.
pub const DEFAULT_POOL_SIZE: i32 = 24;

/// Renders daemon.json; dockerd stops its containers within `shutdown_timeout` seconds.
pub fn render(d: &DaemonSpec, build_cache_keep: Option<i64>, shutdown_timeout: i64) -> String {
    let pools: Vec<_> = if d.default_address_pools.is_empty() {
        vec![serde_json::json!({"base": DEFAULT_POOL_BASE, "size": DEFAULT_POOL_SIZE})]
    } else {
        d.default_address_pools.iter().map(|p| serde_json::json!({"base": p.base, "size": p.size})).collect()
    };
    let mut json = serde_json::json!({
        "bip": d.bip.as_deref().unwrap_or(DEFAULT_BIP),
        "default-address-pools": pools,
        "shutdown-timeout": shutdown_timeout,
    });
    if !d.registry_mirrors.is_empty() {
        json["registry-mirrors"] = serde_json::json!(d.registry_mirrors);
    }
    if !d.insecure_registries.is_empty() {
        json["insecure-registries"] = serde_json::json!(d.insecure_registries);
    }
    if let Some(level) = d.log_level {
        json["log-level"] = serde_json::to_value(level).unwrap_or_default();
    }
    if let Some(keep) = build_cache_keep {
        // dockerd's builder GC: keep at most this much build cache (bytes, as "<n>B").
        json["builder"] = serde_json::json!({"gc": {"enabled": true, "defaultKeepStorage": format!("{keep}B")}});
    }
    json.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AddressPool, LogLevel};

    fn parse(d: &DaemonSpec) -> serde_json::Value {
        serde_json::from_str(&render(d, None, 30)).expect("daemon.json is JSON")
    }

    #[test]
    fn builder_gc_keeps_the_class_share_of_the_volume() {
        let d: serde_json::Value =
            serde_json::from_str(&render(&DaemonSpec::default(), Some(2_147_483_648), 30)).expect("json");
        assert_eq!(d["builder"]["gc"]["enabled"], true);
        assert_eq!(d["builder"]["gc"]["defaultKeepStorage"], "2147483648B");
        assert!(parse(&DaemonSpec::default()).get("builder").is_none(), "no class disk.gc, dockerd's own default");
        let mut plan = crate::resources::testing::plan(&crate::resources::testing::minimal());
        plan.storage.size = "20Gi".into();
        plan.gc = Some(serde_json::from_value(serde_json::json!({"buildCachePercent": 10})).expect("gc"));
        assert_eq!(plan.build_cache_keep(), Some(2_147_483_648));
        plan.gc = Some(serde_json::from_value(serde_json::json!({"buildCachePercent": 0})).expect("gc"));
        assert_eq!(plan.build_cache_keep(), None, "0: dockerd's builder GC as dockerd has it");
    }

    #[test]
    fn defaults_avoid_172_17_and_set_a_shutdown_timeout() {
        let d = parse(&DaemonSpec::default());
        assert_eq!(d["bip"], DEFAULT_BIP);
        assert_eq!(d["default-address-pools"][0]["base"], DEFAULT_POOL_BASE);
        assert_eq!(d["default-address-pools"][0]["size"], DEFAULT_POOL_SIZE);
        assert_eq!(d["shutdown-timeout"], 30, "below the pod's grace period, so nested containers stop cleanly");
        for absent in ["registry-mirrors", "insecure-registries", "log-level", "mtu"] {
            assert!(d.get(absent).is_none(), "{absent} only when set");
        }
    }

    #[test]
    fn carries_every_setting_but_the_mtu() {
        let spec = DaemonSpec {
            registry_mirrors: vec!["https://m.example.com".into()],
            insecure_registries: vec!["reg.internal:5000".into()],
            log_level: Some(LogLevel::Debug),
            bip: Some("10.200.0.1/24".into()),
            default_address_pools: vec![AddressPool { base: "10.201.0.0/16".into(), size: 26 }],
            mtu: Some(1400),
        };
        let d = parse(&spec);
        assert_eq!(d["registry-mirrors"][0], "https://m.example.com");
        assert_eq!(d["insecure-registries"][0], "reg.internal:5000");
        assert_eq!(d["log-level"], "debug");
        assert_eq!(d["bip"], "10.200.0.1/24");
        assert_eq!(d["default-address-pools"], serde_json::json!([{"base": "10.201.0.0/16", "size": 26}]));
        assert!(d.get("mtu").is_none(), "the MTU is passed as flags");
    }
}
