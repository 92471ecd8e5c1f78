//! The Redis Cluster test harness itself: a cluster forms, serves every slot from three
//! masters, and survives the SIGKILL of a master by promoting its replica.

#![allow(clippy::unwrap_used)]

use stockade_tests::redis_cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_forms_and_fails_over_a_killed_master() {
    let mut cluster = Cluster::start().await;
    assert_eq!(cluster.urls().len(), 6);
    assert_eq!(cluster.masters().await.len(), 3);

    let key = "{harness}:k";
    let slot = cluster.slot_of(key).await;
    let (master, replicas) = cluster.serving(slot).await;
    assert_eq!(replicas.len(), 1);
    let client = redis::Client::open(format!("redis://127.0.0.1:{master}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(key)
        .arg("v")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    // Wait until the replica has the write, so that the failover cannot lose it.
    redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async::<i64>(&mut c)
        .await
        .unwrap();

    let failover = cluster.kill_master_of(key).await;
    assert_eq!(failover.killed, master);
    assert_eq!(failover.promoted, replicas[0]);
    assert_eq!(cluster.serving(slot).await.0, failover.promoted);
    assert_eq!(cluster.urls().len(), 5);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", failover.promoted)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let v: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v, "v");

    // Dropped, every process is gone.
    let ports = cluster.urls();
    drop(cluster);
    for url in ports {
        let client = redis::Client::open(url.as_str()).unwrap();
        assert!(
            client.get_multiplexed_async_connection().await.is_err(),
            "{url} still answers"
        );
    }
}
